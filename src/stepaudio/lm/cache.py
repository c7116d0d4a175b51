"""Static, preallocated KV cache with per-slot positions and padding flags."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class KVLayout:
    """The shape of one token's K (or V) in every layer: what a KV cache allocates per slot."""

    layers: int
    kv_heads: int
    head_dim: int


@dataclass(frozen=True)
class CacheStep:
    """The cache slots one forward call writes: [start, end), and how many slots attention reads.

    `read_len` is `end` in eager use; a static-shape step (CUDA graphs) reads all slots and relies on
    the validity flags to hide the unwritten ones.
    """

    start: int
    end: int
    slots: torch.Tensor
    read_len: int


class StaticKVCache:
    """K/V for every layer in one buffer [layers, batch, kv_heads, max_len, head_dim].

    Slots are filled left to right for the whole batch; each slot also records, per row, the token's
    position and whether it is a real token, so rows with different padding share one cache.
    """

    def __init__(
        self,
        layout: KVLayout,
        batch_size: int,
        max_len: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (layout.layers, batch_size, layout.kv_heads, max_len, layout.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.key_pos = torch.zeros(batch_size, max_len, device=device, dtype=torch.long)
        self.key_valid = torch.zeros(batch_size, max_len, device=device, dtype=torch.bool)
        self.slot_ids = torch.arange(max_len, device=device)
        self.length = 0

    @property
    def batch_size(self) -> int:
        return int(self.k.shape[1])

    @property
    def max_len(self) -> int:
        return int(self.k.shape[3])

    def reserve(self, n_tokens: int) -> CacheStep:
        """Claim the next `n_tokens` slots for one forward call."""
        start, end = self.length, self.length + n_tokens
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} slots needed, {self.max_len} allocated")
        self.length = end
        return CacheStep(start, end, self.slot_ids[start:end], end)

    def static_step(self, slots: torch.Tensor) -> CacheStep:
        """A step whose slot indices live in a tensor updated in place (for captured graphs)."""
        return CacheStep(-1, -1, slots, self.max_len)

    def next_positions(self) -> torch.Tensor:
        """Per-row count of real tokens stored so far, i.e. the next position of each row [B]."""
        return self.key_valid[:, : self.length].sum(dim=1)

    def record(self, step: CacheStep, positions: torch.Tensor, valid: torch.Tensor) -> None:
        self.key_pos.index_copy_(1, step.slots, positions)
        self.key_valid.index_copy_(1, step.slots, valid)

    def update(
        self, layer: int, step: CacheStep, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this call's K/V [B, G, q, D] and return every readable slot's K/V."""
        self.k[layer].index_copy_(2, step.slots, k.to(self.k.dtype))
        self.v[layer].index_copy_(2, step.slots, v.to(self.v.dtype))
        return self.k[layer, :, :, : step.read_len], self.v[layer, :, :, : step.read_len]

    def truncate(self, length: int) -> None:
        """Forget slots from `length` on (speculative decoding rolls back this way)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of length {self.length} to {length}")
        self.key_valid[:, length:] = False
        self.length = length

    def reset(self) -> None:
        self.truncate(0)
