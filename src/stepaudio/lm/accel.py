"""Opt-in GPU speed-ups for decoding: a static-shape decode step, replayed as a CUDA graph or compiled.

A decode step normally reads `cache.length` slots (a shape that changes every token). The static
step reads every slot of the preallocated cache and lets the validity flags hide the unwritten
ones, so its shapes never change; that is what CUDA graphs and `torch.compile` need. Use as
`TokenStream(..., decode_fn=StaticDecoder.factory(model, use_graph=True))`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from stepaudio.lm.cache import StaticKVCache
from stepaudio.lm.protocol import CausalLM


class StaticDecoder:
    """One-token decode steps with fixed shapes for one cache.

    use_graph: capture the step once as a CUDA graph and replay it (CUDA only).
    compile_mode: wrap the step in torch.compile with this mode (e.g. "max-autotune-no-cudagraphs").
    With neither, the static step runs eagerly (the CPU-testable form of the same code path).
    """

    def __init__(
        self,
        model: CausalLM,
        cache: StaticKVCache,
        *,
        use_graph: bool = False,
        compile_mode: str | None = None,
    ) -> None:
        device = cache.k.device
        if use_graph and device.type != "cuda":
            raise ValueError("CUDA graphs need the model and cache on a CUDA device")
        self.model, self.cache = model, cache
        batch = cache.batch_size
        self.ids = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.positions = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.valid = torch.ones(batch, 1, dtype=torch.bool, device=device)
        self.slots = torch.zeros(1, dtype=torch.long, device=device)
        self.step = cache.static_step(self.slots)
        self._fn: Callable[[], torch.Tensor] = self._run
        if compile_mode is not None:
            self._fn = torch.compile(self._run, mode=compile_mode, fullgraph=True)
        self.use_graph = use_graph
        self._graph: torch.cuda.CUDAGraph | None = None
        self._out: torch.Tensor | None = None

    @classmethod
    def factory(
        cls, model: CausalLM, *, use_graph: bool = False, compile_mode: str | None = None
    ) -> Callable[[StaticKVCache], Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]]:
        def make(cache: StaticKVCache) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
            return cls(model, cache, use_graph=use_graph, compile_mode=compile_mode)

        return make

    def _run(self) -> torch.Tensor:
        model = self.model
        hidden = model.hidden(model.embed(self.ids), self.positions, self.cache, self.valid, step=self.step)
        return model.logits(hidden[:, -1])

    def __call__(self, ids: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        cache = self.cache
        if cache.length >= cache.max_len:
            raise ValueError(f"KV cache full: {cache.max_len} slots allocated")
        self.ids.copy_(ids)
        self.positions.copy_(positions)
        self.valid.copy_(valid)
        self.slots.fill_(cache.length)
        cache.length += 1
        if not self.use_graph:
            return self._fn()
        if self._graph is None:
            self._capture()
        assert self._graph is not None and self._out is not None
        self._graph.replay()
        return self._out.clone()

    def _capture(self) -> None:
        # Warm-up runs write the same slot the replay will write, so they leave no trace.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._fn()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._out = self._fn()
        self._graph = graph
