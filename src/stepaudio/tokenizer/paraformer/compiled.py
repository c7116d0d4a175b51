"""The vq02 streaming step compiled once by inductor, with the weights frozen into it.

Once the look-back is full, every streaming step runs the same shapes (9 rows on the real model), so one
compiled graph over all layers serves the whole utterance. Frozen weights let inductor pick its own
small-batch CPU GEMM (`CPP` backend, autotuned against ATen): on an AVX2 CPU it runs a 2048 x 512 linear
at 9 rows in half of oneDNN's time, and the 50-layer step goes from ~80 to ~60 ms. The arithmetic is the
same float32 model (outputs agree to ~1e-5); the first steps, whose look-back is still short, run in the
full shape with the missing keys masked, and only a shorter last step runs the eager layers. Compiling
takes minutes on 2 cores, so `LinguisticTokenizer.warm_up` does it up front.
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
from stepaudio.tokenizer.paraformer.encoder import SanmLayer

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

    def forward(
        self, x: torch.Tensor, keys: list[torch.Tensor], values: list[torch.Tensor], key_bias: torch.Tensor
    ) -> Any:
        out_keys, out_values = [], []
        for layer, k, v in zip(self.layers, keys, values, strict=True):
            x, k_all, v_all = layer(x, (k, v), key_bias)
            out_keys.append(k_all)
            out_values.append(v_all)
        return x, out_keys, out_values


class CompiledSteadyStep:
    """Runs every layer of a streaming step with a full-length look-back through one compiled graph.

    A shorter look-back (the first steps of a stream) is padded in front with zero keys whose scores get
    -inf, which gives them exactly zero weight, so those steps run compiled too; a full one gets a zero
    bias, which changes nothing. The row count is fixed by the first step it sees; any other (the last,
    shorter step) returns None and the caller runs the eager layers, so nothing ever recompiles.
    """

    def __init__(self, layers: Sequence[SanmLayer]) -> None:
        require_compiler()
        self.heads = [layer.self_attn.heads for layer in layers]
        self.d_k = [layer.self_attn.d_k for layer in layers]
        self._compiled = torch.compile(_LayerStack(layers).eval(), dynamic=False)
        self._rows: int | None = None

    def __call__(
        self, x: torch.Tensor, past: Sequence[KV], cache_positions: int
    ) -> tuple[torch.Tensor, list[KV]] | None:
        """The layers' output and per-layer (keys, values) without padding, or None for an eager step."""
        if x.device.type != "cpu" or x.shape[0] != 1 or cache_positions <= 0:
            return None
        have = past[0][0].shape[2] if past else 0
        if have > cache_positions or (self._rows is not None and x.shape[1] != self._rows):
            return None
        self._rows = x.shape[1]
        pad = cache_positions - have
        keys, values = [], []
        for i in range(len(self.heads)):
            zeros = x.new_zeros(1, self.heads[i], pad, self.d_k[i])
            k, v = past[i] if past else (zeros[:, :, :0], zeros[:, :, :0])
            keys.append(torch.cat([zeros, k], dim=2) if pad else k.contiguous())
            values.append(torch.cat([zeros, v], dim=2) if pad else v.contiguous())
        key_bias = x.new_zeros(1, 1, 1, cache_positions + x.shape[1])
        key_bias[..., :pad] = float("-inf")
        # the options must be in inductor's config while it compiles (`torch.compile(options=)` does not
        # reach freezing, and without frozen weights there is no CPP GEMM); the inputs are contiguous
        # because the look-back views' strides vary and the compiled graph's do not
        with inductor_config.patch(INDUCTOR_OPTIONS), torch.no_grad():
            out, keys_all, values_all = self._compiled(x, keys, values, key_bias)
        return out, [(k[:, :, pad:], v[:, :, pad:]) for k, v in zip(keys_all, values_all, strict=True)]
