"""Square-root ALiBi: the only way position enters Step1 attention (there is no RoPE)."""

from __future__ import annotations

import math

import torch


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Per-head slopes in the reference order (not sorted), float32 [n_heads].

    With n = 2**floor(log2 H): (2^(-8/n))^k for k = 1..n, then (2^(-4/n))^k for odd k for the
    remaining H - n heads.
    """
    if n_heads < 1:
        raise ValueError(f"n_heads must be positive, got {n_heads}")
    n = 2 ** math.floor(math.log2(n_heads))
    base = 2.0 ** (-8.0 / n)
    slopes = [base**k for k in range(1, n + 1)]
    extra = 2.0 ** (-4.0 / n)
    slopes += [extra**k for k in range(1, 2 * (n_heads - n), 2)]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(
    slopes: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor, allowed: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Additive bias [B, H, q, T]: -slope_h * sqrt(q_pos - k_pos) where allowed, -inf elsewhere.

    Built only for the query and key positions in use, so a decode step costs O(H x T).
    """
    dist = (q_pos[:, :, None] - k_pos[:, None, :]).clamp(min=0).to(torch.float32).sqrt()
    bias = dist[:, None, :, :] * -slopes.to(torch.float32)[None, :, None, None]
    bias = bias.masked_fill(~allowed[:, None, :, :], float("-inf"))
    return bias.to(dtype)
