"""Noise that is a pure function of (seed, stream, position): the same column at the same index, always.

Streaming re-runs the flow over windows that start at different mel frames, and vocodes chunks
that start at different samples. If the random draws depended on where a run starts, a streamed
frame would see other noise than the same frame offline, and the two outputs would differ as much
as two different seeds do. Here column `i` is drawn from a generator seeded with a hash of
(seed, stream, i // block), so any slice equals the same slice of one long draw, with no bound on
the length and no pre-drawn table.
"""

from __future__ import annotations

import math

import torch

_MASK64 = (1 << 64) - 1

# stream ids: independent noise for each consumer of one seed
FLOW_NOISE = 1
VOCODER_NOISE = 2
VOCODER_PHASE = 3


def _mix(*values: int) -> int:
    """splitmix64 over the values: a well-spread 63-bit seed for torch.Generator."""
    state = 0
    for value in values:
        state = (state + (value & _MASK64) + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        state = z ^ (z >> 31)
    return state >> 1


class FrameNoise:
    """Standard-normal columns `[channels, stop - start]` addressed by absolute index."""

    def __init__(self, seed: int, stream: int, channels: int, block: int = 256) -> None:
        if block < 1 or channels < 1:
            raise ValueError("block and channels must be positive")
        self.seed = seed
        self.stream = stream
        self.channels = channels
        self.block = block
        self._cache: dict[int, torch.Tensor] = {}

    def _block(self, index: int) -> torch.Tensor:
        cached = self._cache.get(index)
        if cached is None:
            gen = torch.Generator().manual_seed(_mix(self.seed, self.stream, index))
            cached = torch.randn(self.channels, self.block, generator=gen)
            self._cache[index] = cached
        return cached

    def columns(self, start: int, stop: int) -> torch.Tensor:
        """Columns `[start, stop)` (float32, CPU)."""
        if start < 0 or stop < start:
            raise ValueError(f"bad noise range [{start}, {stop})")
        if stop == start:
            return torch.zeros(self.channels, 0)
        first, last = start // self.block, (stop - 1) // self.block
        joined = torch.cat([self._block(i) for i in range(first, last + 1)], dim=1)
        offset = first * self.block
        return joined[:, start - offset : stop - offset]

    def forget_before(self, index: int) -> None:
        """Drop cached blocks that end before column `index` (streams only move forward)."""
        for key in [k for k in self._cache if (k + 1) * self.block <= index]:
            del self._cache[key]


def initial_phases(seed: int, harmonics: int) -> torch.Tensor:
    """HiFT's random initial sine phases `[1, harmonics, 1]` in [-pi, pi), harmonic 0 fixed at 0."""
    gen = torch.Generator().manual_seed(_mix(seed, VOCODER_PHASE, 0))
    phase = torch.rand(1, harmonics, 1, generator=gen) * (2 * math.pi) - math.pi
    phase[:, 0] = 0
    return phase
