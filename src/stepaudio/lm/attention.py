"""Who attends to whom in one forward over a padded batch and a cache: the part every family shares.

Step1 turns the plan into an ALiBi bias, Qwen2 into a mask beside RoPE; positions, padding and cache
slots follow the same rules for both, so padded batches and cached decoding behave alike.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from stepaudio.lm.cache import CacheStep, StaticKVCache


class AttentionPlan(NamedTuple):
    """Query positions [B, q], key positions [B, T] and the visibility mask [B, q, T] of one call.

    A NamedTuple rather than a dataclass so that a compiled static decode step (`lm.accel`) traces it.
    """

    positions: torch.Tensor
    key_positions: torch.Tensor
    allowed: torch.Tensor


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


def plan_attention(
    batch: int,
    q_len: int,
    device: torch.device,
    positions: torch.Tensor | None,
    cache: StaticKVCache | None,
    valid: torch.Tensor | None,
    step: CacheStep | None,
) -> tuple[AttentionPlan, CacheStep | None]:
    """Fill in default flags and positions, record this call's tokens in the cache, plan the attention.

    `valid` defaults to all real; `positions` to the running count of real tokens in each row (continuing
    from the cache). With a cache, `step` defaults to the next `q_len` slots; the step is returned so that
    every layer writes its K/V there.
    """
    if valid is None:
        valid = torch.ones(batch, q_len, dtype=torch.bool, device=device)
    if positions is None:
        start = cache.next_positions() if cache is not None else torch.zeros(batch, dtype=torch.long, device=device)
        positions = (start[:, None] + valid.long().cumsum(1) - 1).clamp(min=0)
    if cache is not None:
        if step is None:
            step = cache.reserve(q_len)
        cache.record(step, positions, valid)
        k_pos = cache.key_pos[:, : step.read_len]
        k_valid = cache.key_valid[:, : step.read_len]
        k_slot = cache.slot_ids[: step.read_len]
        q_slot = step.slots
    else:
        k_pos, k_valid = positions, valid
        k_slot = q_slot = torch.arange(q_len, device=device)
    allowed = attention_allowed(positions, q_slot, k_pos, k_slot, k_valid)
    return AttentionPlan(positions, k_pos, allowed), step
