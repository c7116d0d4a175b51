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


def attention_allowed(
    q_pos: torch.Tensor, q_slot: torch.Tensor, k_pos: torch.Tensor, k_slot: torch.Tensor, k_valid: torch.Tensor
) -> torch.Tensor:
    """Which keys each query may see, bool [B, q, T].

    A key is visible when it is a real token (not padding), not later in position and not later
    in the cache. A query always sees its own slot so that padding rows never softmax over an
    empty set (which would put NaN into the cache of later layers).
    """
    causal = (k_pos[:, None, :] <= q_pos[:, :, None]) & (k_slot[None, None, :] <= q_slot[None, :, None])
    own = k_slot[None, None, :] == q_slot[None, :, None]
    return (causal & k_valid[:, None, :]) | own


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
