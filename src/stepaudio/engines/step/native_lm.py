"""The in-process language-model backend: a Step1 checkpoint run by `stepaudio.lm`.

Prompts repeat their heads: every sentence of a voice starts with the same ~480-token voice prompt, every
chat turn with the system prompt and the earlier turns. A `PrefixCache` keeps those heads' K/V, so a request
prefills only what is new; it is on by default (`DEFAULT_PREFIX_CACHE_MB` per model, 0 turns it off).

On CUDA a decode step of a 3B model is ~1,000 small kernels, so launching them costs more than the weights'
reads: each request's decode steps replay one captured CUDA graph instead (`cuda_graphs`, on by default;
measured on an H200, TTS-3B bf16: 62 tok/s eager, 216 tok/s replayed).

Concurrent requests (several sessions' TTS sentences, a chat turn beside them) share decode steps when
`lm_batch` > 1 (`lm.generations`): one `lm.batcher.Batcher` loop decodes up to that many requests per forward,
each joining between steps and getting the tokens it would get alone. It is the default where that pays and keeps
each request's tokens (CUDA, where the batched step replays a CUDA graph too, one per cache buffer). With
`lm_batch=1` on CUDA, requests replaying graphs run one at a time. The step engine declares each part as wide as
its LM's rows (`lm.generations.planned_rows`), so the server lets that many requests in at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from stepaudio.engines.base import CancelToken
from stepaudio.engines.lm_backend import GeneratedToken
from stepaudio.errors import OptionError
from stepaudio.lm import GenerationConfig
from stepaudio.lm.batcher import Batcher
from stepaudio.lm.generations import Generations, default_rows
from stepaudio.lm.prefix_cache import PrefixCache, prefix_cache_of_size
from stepaudio.lm.quant import apply_weight_format, resolve_weight_format
from stepaudio.lm.step1 import Step1ForCausalLM, load_step1
from stepaudio.text.detokenize import IncrementalDetokenizer
from stepaudio.text.tokenizer import StepTokenizer

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Per model: TTS-3B keeps 32 KiB of bf16 K/V a token, so ~16k tokens (30+ voices with their sentences).
DEFAULT_PREFIX_CACHE_MB = 512


@dataclass
class NativeLM:
    model: Step1ForCausalLM
    tokenizer: StepTokenizer
    prefix_cache: PrefixCache | None = None
    cuda_graphs: bool = True
    lm_batch: int = 1  # requests decoded together (1: each alone, in its own cache)
    generations: Generations = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.generations = Generations(self.model, self.lm_batch, self.prefix_cache, self.cuda_graphs)

    @property
    def batcher(self) -> Batcher | None:
        return self.generations.batcher

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
        decoded together (1: each alone; None: `lm.generations.default_rows`, by device and weight format).
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
                   cuda_graphs=cuda_graphs, lm_batch=default_rows(model) if lm_batch is None else lm_batch)

    def stream(
        self,
        prompt: Sequence[int] | str,
        config: GenerationConfig,
        cancel: CancelToken | None = None,
    ) -> Iterator[GeneratedToken]:
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
        detokenizer = IncrementalDetokenizer(self.tokenizer)
        for step in self.generations.stream(ids, config, cancel_event=cancel.event if cancel else None):
            token = step.tokens[0]
            if token < 0 or token in config.stop_ids:
                return
            yield GeneratedToken(text=detokenizer.push(token), id=token)
