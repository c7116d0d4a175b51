"""How one in-process model runs the generations asked of it: each alone in its own cache, or decoded together.

Every native backend (the Step engine's Step1 LMs, Step-Audio 2's Qwen2 LM) answers requests from several threads
at once (sessions, sentences, a chat turn beside them). With `rows` > 1 a `Batcher` decodes up to that many
together, each joining between steps and getting the tokens it would get alone; a request longer than the batch's
per-request bound runs alone (`TokenStream`). Where that pays is per device (`default_rows`): on CUDA a batched
step costs about one row; on the 2-core AVX2 CPU measured, fp32 and bf16 products took 3-8x longer at 4 rows than
at 1, so the CPU default is 1. `planned_rows` answers the same before a model loads: the server sizes its
gate by it, so that concurrent requests reach the batcher instead of queueing in front of it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterator, Sequence

import torch
from torch import nn

from stepaudio.errors import OptionError
from stepaudio.kernels.packed import PackedInt8Linear
from stepaudio.lm.accel import StaticDecoder
from stepaudio.lm.batcher import BatchConfig, BatchedStream, Batcher
from stepaudio.lm.generate import GeneratedStep, GenerationConfig, TokenStream
from stepaudio.lm.prefix_cache import PrefixCache
from stepaudio.lm.protocol import CausalLM

# Rows decoded together where that pays (see `default_rows`).
DEFAULT_ROWS = 4


def default_rows(model: nn.Module) -> int:
    """Rows per decode step where none are asked for: DEFAULT_ROWS on CUDA, 1 on CPU.

    Measured with `stepaudio bench lm-batch`: on an H200 (TTS-3B bf16, 32 layers, graphs both ways) one request
    runs at 171 tok/s batched or alone, four at once at 376 vs 156 tok/s (first token 0.40 vs 1.33 s), with the
    same greedy tokens in fp32. On the 2-core AVX2 EPYC measured, fp32 and bf16 products took 3-8x longer at 4
    rows than at 1 (a GEMM where one row is a GEMV), so batching does not pay (bf16, 4 requests: 3.1 vs 3.6
    tok/s); int8 (FBGEMM) pays (31.9 vs 13.8 tok/s) but quantises each call's activations with one scale for all
    rows, so a request's tokens depend on its neighbours: opt in knowing that."""
    if any(isinstance(m, PackedInt8Linear) for m in model.modules()):
        return 1
    return DEFAULT_ROWS if next(model.parameters()).device.type == "cuda" else 1


def planned_rows(device: str, rows: int | None) -> int:
    """The rows a model loaded on `device` will decode together, known before it loads: `rows`, else
    `default_rows`'s answer for the device (FBGEMM int8 is a CPU format, where the default is 1 anyway)."""
    if rows is not None:
        return rows
    return DEFAULT_ROWS if torch.device(device).type == "cuda" else 1


class Generations:
    """One model's generations: `stream` gives a request's decode steps, batched with others' when `rows` > 1.

    `cuda_graphs`: decode steps replay captured CUDA graphs (ignored off CUDA); requests alone then run one at a
    time, because a capture fails while another thread launches work (measured on an H200: "operation not
    permitted when stream is capturing")."""

    def __init__(self, model: CausalLM, rows: int = 1, prefix_cache: PrefixCache | None = None,
                 cuda_graphs: bool = True) -> None:
        if rows < 1:
            raise OptionError(f"lm_batch is the number of requests decoded together (1: each alone), not {rows}")
        self.model = model
        self.rows = rows
        self.prefix_cache = prefix_cache
        self.graphs = cuda_graphs and model.device.type == "cuda"
        self._graph_lock = threading.Lock()
        self.batcher: Batcher | None = None
        if rows > 1:
            self.batcher = Batcher(model, BatchConfig(rows=rows), prefix_cache=prefix_cache,
                                   decode_fn=StaticDecoder.factory(model, use_graph=True) if self.graphs else None)

    def stream(self, ids: Sequence[int], config: GenerationConfig, *, cancel_event: threading.Event | None = None,
               prompt_embeds: torch.Tensor | None = None,
               prefix_keys: Sequence[Hashable] | None = None) -> Iterator[GeneratedStep]:
        """The decode steps of one prompt (`prompt_embeds` [len(ids), hidden] where its rows are not the ids'
        embeddings, with `prefix_keys` naming each row for prefix reuse)."""
        tokens: TokenStream | BatchedStream
        if self.batcher is not None and self.batcher.fits(len(ids), config):
            tokens = self.batcher.stream(ids, config, cancel_event=cancel_event, prompt_embeds=prompt_embeds,
                                         prefix_keys=prefix_keys)
        else:
            keys = [prefix_keys] if prefix_keys is not None and self.prefix_cache is not None else None
            tokens = TokenStream(self.model, [list(ids)], config, cancel_event=cancel_event,
                                 prompt_embeds=[prompt_embeds] if prompt_embeds is not None else None,
                                 prefix_cache=self.prefix_cache, prefix_keys=keys,
                                 decode_fn=StaticDecoder.factory(self.model, use_graph=True) if self.graphs else None)
        alone_with_graphs = isinstance(tokens, TokenStream) and self.graphs
        with self._graph_lock if alone_with_graphs else contextlib.nullcontext():
            yield from tokens

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
