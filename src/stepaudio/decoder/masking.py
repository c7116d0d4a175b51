"""Padding masks for batched flow inference: a padded batch must equal its items run one by one."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Boolean `[B, max_len]`, True on valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def group_norm(x: torch.Tensor, norm: nn.GroupNorm, mask: torch.Tensor | None) -> torch.Tensor:
    """GroupNorm over `[B, C, T]` whose statistics use only valid frames when `mask` [B, 1, T] is given.

    With `mask=None` this is exactly `norm(x)` (the reference, which never pads).
    """
    if mask is None:
        return F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)
    b, c, t = x.shape
    g = norm.num_groups
    xf = x.float().view(b, g, c // g, t)
    m = mask.to(torch.float32).view(b, 1, 1, t)
    count = m.sum(dim=(2, 3), keepdim=True) * (c // g)
    mean = (xf * m).sum(dim=(2, 3), keepdim=True) / count
    var = (((xf - mean) * m) ** 2).sum(dim=(2, 3), keepdim=True) / count
    out = ((xf - mean) * torch.rsqrt(var + norm.eps)).view(b, c, t).to(x.dtype)
    if norm.weight is not None:
        out = out * norm.weight[None, :, None] + norm.bias[None, :, None]
    return out
