"""Linears on int8 or fp16 weights, run with plain torch ops (no packing), and the int8 quantiser.

int8 is per output channel and symmetric (`quantize_weight`); `Int8Linear` reads one byte per weight in
two CPU modes, "dynamic" (activations quantised per token, `torch._int_mm`, VNNI) and "weight-only"
(activations stay in floating point, `torch._weight_int8pack_mm`); off the CPU it dequantises per call.
`HalfLinear` keeps bf16-exact weights in fp16 for CPUs whose fp16 matrix-vector kernel is the faster one.
"""

from __future__ import annotations

import torch
from torch import nn

from stepaudio.hardware import cpu_has_amx


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 [N, K] and fp32 scales [N] with weight ~= q * scale[:, None]."""
    w = weight.to(torch.float32)
    scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


class Int8Linear(nn.Module):
    """Bias-free linear layer with int8 weights; output dtype follows the input."""

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor, mode: str = "dynamic") -> None:
        super().__init__()
        if mode not in ("dynamic", "weight-only"):
            raise ValueError(f"unknown Int8Linear mode {mode!r}; choose dynamic or weight-only")
        self.mode = mode
        self.out_features, self.in_features = qweight.shape
        self.qweight: torch.Tensor
        self.scale: torch.Tensor
        self.register_buffer("qweight", qweight.contiguous())
        self.register_buffer("scale", scale.to(torch.float32))

    @classmethod
    def from_linear(cls, linear: nn.Linear, mode: str = "dynamic") -> Int8Linear:
        if linear.bias is not None:
            raise ValueError("Int8Linear supports bias-free layers only")
        q, scale = quantize_weight(linear.weight.detach())
        return cls(q, scale, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if flat.device.type != "cpu":  # the int8 kernels here target CPUs; elsewhere dequantise
            weight = self.qweight.to(flat.dtype) * self.scale.to(flat.dtype)[:, None]
            out = flat @ weight.t()
        elif self.mode == "weight-only":
            out = torch._weight_int8pack_mm(flat, self.qweight, self.scale.to(flat.dtype))
        else:
            x32 = flat.to(torch.float32)
            x_scale = (x32.abs().amax(dim=1, keepdim=True) / 127.0).clamp(min=1e-12)
            xq = torch.round(x32 / x_scale).clamp(-127, 127).to(torch.int8)
            acc = torch._int_mm(xq, self.qweight.t())
            out = (acc.to(torch.float32) * x_scale * self.scale).to(x.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)


class HalfLinear(nn.Module):
    """Bias-free linear layer with fp16 weights; inputs are cast to fp16 and results back."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight: torch.Tensor
        self.register_buffer("weight", weight.to(torch.float16).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.numel() // x.shape[-1] > 8:
            # Many rows (prefill): the CPU fp16 matrix-matrix kernel is slow. With AMX, bf16 is the fastest
            # (and exact: the weights are bf16 values); without, fp32.
            wide = torch.bfloat16 if cpu_has_amx() else torch.float32
            return torch.nn.functional.linear(x.to(wide), self.weight.to(wide)).to(x.dtype)
        return torch.nn.functional.linear(x.to(torch.float16), self.weight).to(x.dtype)
