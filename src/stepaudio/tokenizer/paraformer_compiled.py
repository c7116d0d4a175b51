"""The steady-state vq02 streaming step compiled once by inductor, with the weights frozen into it.

Once the look-back is full, every streaming step runs the same shapes (9 rows on the real model), so one
compiled graph over all layers serves the whole utterance. Frozen weights let inductor pick its own
small-batch CPU GEMM (`CPP` backend, autotuned against ATen): on an AVX2 CPU it runs a 2048 x 512 linear
at 9 rows in half of oneDNN's time, and the 50-layer step goes from ~80 to ~60 ms. The arithmetic is the
same float32 model (outputs agree to ~1e-5); steps of any other shape (the first few, the last) run the
eager layers. Compiling takes minutes on 2 cores, so `LinguisticTokenizer.warm_up` does it up front.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from typing import Any

import torch
import torch._inductor.config as inductor_config
from torch import nn

from stepaudio.errors import UnsupportedError

INDUCTOR_OPTIONS: dict[str, Any] = {
    "freezing": True,
    "freezing_discard_parameters": True,  # the graph keeps its own packed weights; drop the originals
    "max_autotune": True,
    "max_autotune_gemm_backends": "CPP,ATEN",
}

KV = tuple[torch.Tensor, torch.Tensor]


def require_compiler() -> None:
    """Inductor writes C++; without a compiler the mode cannot run at all."""
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None and shutil.which("clang++") is None:
        raise UnsupportedError(f"weight mode fp32-compiled needs a C++ compiler ({compiler} or clang++) on PATH")


class _LayerStack(nn.Module):
    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, keys: list[torch.Tensor], values: list[torch.Tensor]) -> Any:
        out_keys, out_values = [], []
        for layer, k, v in zip(self.layers, keys, values, strict=True):
            x, k_all, v_all = layer(x, (k, v))
            out_keys.append(k_all)
            out_values.append(v_all)
        return x, out_keys, out_values


class CompiledSteadyStep:
    """Runs every layer of a steady step (a full look-back) through one compiled graph.

    Which shape counts as steady is fixed by the first full step it sees; anything else returns None
    and the caller runs the eager layers, so nothing ever recompiles.
    """

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        require_compiler()
        self._compiled = torch.compile(_LayerStack(layers).eval(), dynamic=False)
        self._shape: tuple[int, ...] | None = None

    def __call__(
        self, x: torch.Tensor, past: Sequence[KV], cache_positions: int
    ) -> tuple[torch.Tensor, list[KV]] | None:
        """The layers' output and per-layer (keys, values), or None when this is not the steady step."""
        if x.device.type != "cpu" or not past or any(k.shape[2] != cache_positions for k, _ in past):
            return None
        shape = (*x.shape, *past[0][0].shape)
        if self._shape is None:
            self._shape = shape
        elif shape != self._shape:
            return None
        # the options must be in inductor's config while it compiles (`torch.compile(options=)` does not
        # reach freezing, and without frozen weights there is no CPP GEMM); contiguous: the look-back
        # views' strides vary, the compiled graph's do not
        with inductor_config.patch(INDUCTOR_OPTIONS), torch.no_grad():
            out, keys, values = self._compiled(x, [k.contiguous() for k, _ in past], [v.contiguous() for _, v in past])
        return out, list(zip(keys, values, strict=True))
