"""Building blocks every family's decoder shares: the fp32-statistics RMSNorm and frozen linears."""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """`x * rsqrt(mean(x^2) + eps) * weight`, the statistics in fp32 (no +1 on the weight)."""

    def __init__(self, dim: int, eps: float, device: torch.device | str | None, dtype: torch.dtype | None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.to(torch.float32)
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return x32.to(x.dtype) * self.weight


def frozen_linear(
    n_in: int, n_out: int, device: torch.device | str | None, dtype: torch.dtype | None, *, bias: bool = False
) -> nn.Linear:
    """An inference linear (no gradients; training turns them on where it wants them)."""
    layer = nn.Linear(n_in, n_out, bias=bias, device=device, dtype=dtype)
    layer.requires_grad_(False)
    return layer
