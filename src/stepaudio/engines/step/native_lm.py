"""The in-process language-model backend: a Step1 checkpoint run by `stepaudio.lm`.

Prompts repeat their heads: every sentence of a voice starts with the same ~480-token voice prompt, every
chat turn with the system prompt and the earlier turns. A `PrefixCache` keeps those heads' K/V, so a request
prefills only what is new; it is on by default (`DEFAULT_PREFIX_CACHE_MB` per model, 0 turns it off).

On CUDA a decode step of a 3B model is ~1,000 small kernels, so launching them costs more than the weights'
reads: each request's decode steps replay one captured CUDA graph instead (`cuda_graphs`, on by default;
measured on an H200, TTS-3B bf16: 62 tok/s eager, 216 tok/s replayed).

Concurrent requests (several sessions' TTS sentences, a chat turn beside them) share decode steps when
`lm_batch` > 1: one `lm.batcher.Batcher` loop decodes up to that many requests per forward, each joining
between steps and getting the tokens it would get alone. It is the default where that pays and keeps each
request's tokens (`default_lm_batch`: CUDA, where the batched step replays a CUDA graph too, one per cache buffer).
With `lm_batch=1` on CUDA, requests replaying graphs run one at a time. Requests longer than the batch's
per-request bound run alone. The step engine declares each part as wide as its LM's rows (`planned_lm_batch`), so
the server lets that many requests in at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from stepaudio.engines.base import CancelToken
from stepaudio.engines.lm_backend import GeneratedToken
from stepaudio.errors import OptionError
from stepaudio.kernels.packed import PackedInt8Linear
from stepaudio.lm import GenerationConfig, TokenStream
from stepaudio.lm.accel import StaticDecoder
from stepaudio.lm.batcher import BatchConfig, BatchedStream, Batcher
from stepaudio.lm.prefix_cache import PrefixCache, prefix_cache_of_size
from stepaudio.lm.quant import apply_weight_format, resolve_weight_format
from stepaudio.lm.step1 import Step1ForCausalLM, load_step1
from stepaudio.text.detokenize import IncrementalDetokenizer
from stepaudio.text.tokenizer import StepTokenizer

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Per model: TTS-3B keeps 32 KiB of bf16 K/V a token, so ~16k tokens (30+ voices with their sentences).
DEFAULT_PREFIX_CACHE_MB = 512
# Rows decoded together where that pays (see `default_lm_batch`).
DEFAULT_LM_BATCH = 4


def default_lm_batch(model: nn.Module) -> int:
    """Rows per decode step where `lm_batch` is not given: DEFAULT_LM_BATCH on CUDA, 1 on CPU.

    Measured with `stepaudio bench lm-batch`: on an H200 (TTS-3B bf16, 32 layers, graphs both ways) one request
    runs at 171 tok/s batched or alone, four at once at 376 vs 156 tok/s (first token 0.40 vs 1.33 s), with the
    same greedy tokens in fp32. On the 2-core AVX2 EPYC measured, fp32 and bf16 products took 3-8x longer at 4
    rows than at 1 (a GEMM where one row is a GEMV), so batching does not pay (bf16, 4 requests: 3.1 vs 3.6
    tok/s); int8 (FBGEMM) pays (31.9 vs 13.8 tok/s) but quantises each call's activations with one scale for all
    rows, so a request's tokens depend on its neighbours: opt in with `lm_batch` knowing that."""
    if any(isinstance(m, PackedInt8Linear) for m in model.modules()):
        return 1
    return DEFAULT_LM_BATCH if next(model.parameters()).device.type == "cuda" else 1


def planned_lm_batch(device: str, lm_batch: int | None) -> int:
    """The rows `NativeLM.load(device=..., lm_batch=...)` will decode together, known before the model loads (the
    server sizes its gate by it): `lm_batch`, else `default_lm_batch`'s answer for the device (FBGEMM int8 is a
    CPU format, where the default is 1 anyway)."""
    if lm_batch is not None:
        return lm_batch
    return DEFAULT_LM_BATCH if torch.device(device).type == "cuda" else 1


@dataclass
class NativeLM:
    model: Step1ForCausalLM
    tokenizer: StepTokenizer
    prefix_cache: PrefixCache | None = None
    cuda_graphs: bool = True
    lm_batch: int = 1  # requests decoded together (1: each alone, in its own cache)
    batcher: Batcher | None = field(default=None, init=False, repr=False)
    # One graph-replaying request at a time: a capture fails while another thread launches work (measured on an
    # H200: concurrent requests alone failed with "operation not permitted when stream is capturing").
    _graph_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.lm_batch < 1:
            raise OptionError(f"lm_batch is the number of requests decoded together (1: each alone), "
                              f"not {self.lm_batch}")
        if self.lm_batch > 1:
            graphs = self.cuda_graphs and self.model.device.type == "cuda"
            self.batcher = Batcher(self.model, BatchConfig(rows=self.lm_batch), prefix_cache=self.prefix_cache,
                                   decode_fn=StaticDecoder.factory(self.model, use_graph=True) if graphs else None)

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        quant: str | None = None,
        prefix_cache_mb: int = DEFAULT_PREFIX_CACHE_MB,
        cuda_graphs: bool = True,
        lm_batch: int | None = None,
    ) -> NativeLM:
        """Load a model folder (config.json, safetensors, tokenizer.model).

        `quant` is a weight format of `stepaudio.lm.quant.WEIGHT_FORMATS`: `int8` (FBGEMM-packed, fastest on
        CPU), `int8-weight-only`, `int4` (4-bit groups, CPU and CUDA), `fp16-weights`, `bf16-packed`, `none`, or
        `auto` (the default: the fastest format for a bf16 model on this CPU, int8 only where it is a third cheaper,
        see `resolve_weight_format`).
        `prefix_cache_mb` bounds the K/V of prompt prefixes kept for reuse (0: none kept). `cuda_graphs`: replay
        decode steps as CUDA graphs (ignored off CUDA). `lm_batch`: requests
        decoded together (1: each alone; None: `default_lm_batch`, by device and weight format).
        """
        directory = Path(model_dir)
        if dtype is not None and dtype not in DTYPES:
            raise OptionError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        if prefix_cache_mb < 0:
            raise OptionError(f"prefix_cache_mb is a size in MiB (0 turns reuse off), not {prefix_cache_mb}")
        model = load_step1(directory, device=device, dtype=DTYPES[dtype] if dtype else None)
        weight_dtype = next(model.parameters()).dtype
        apply_weight_format(model, resolve_weight_format(quant or "auto", device, weight_dtype))
        return cls(model=model, tokenizer=StepTokenizer(directory), prefix_cache=prefix_cache_of_size(prefix_cache_mb),
                   cuda_graphs=cuda_graphs, lm_batch=default_lm_batch(model) if lm_batch is None else lm_batch)

    def stream(
        self,
        prompt: Sequence[int] | str,
        config: GenerationConfig,
        cancel: CancelToken | None = None,
    ) -> Iterator[GeneratedToken]:
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
        event = cancel.event if cancel else None
        tokens: TokenStream | BatchedStream
        if self.batcher is not None and self.batcher.fits(len(ids), config):
            tokens = self.batcher.stream(ids, config, cancel_event=event)
        else:
            tokens = self._alone(ids, config, event)
        graphs = isinstance(tokens, TokenStream) and self.cuda_graphs and self.model.device.type == "cuda"
        with self._graph_lock if graphs else contextlib.nullcontext():
            detokenizer = IncrementalDetokenizer(self.tokenizer)
            for step in tokens:
                token = step.tokens[0]
                if token < 0 or token in config.stop_ids:
                    return
                yield GeneratedToken(text=detokenizer.push(token), id=token)

    def _alone(self, ids: list[int], config: GenerationConfig, event: threading.Event | None) -> TokenStream:
        graphs = self.cuda_graphs and self.model.device.type == "cuda"
        return TokenStream(self.model, [ids], config, cancel_event=event, prefix_cache=self.prefix_cache,
                           decode_fn=StaticDecoder.factory(self.model, use_graph=True) if graphs else None)
