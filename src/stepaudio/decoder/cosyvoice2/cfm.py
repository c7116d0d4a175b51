"""CausalConditionalCFM: Euler steps from noise to mel on the cosine schedule, with classifier-free guidance.

The initial noise is a fixed buffer (the reference draws `rand_noise [1, 80, 30000]` once at construction);
offline uses its first T columns, a chunk the columns from the current estimator-cache length. Here the
buffer is a `NoiseSource`: a given tensor (to reproduce a reference run) or seeded columns without a length
limit (`FrameNoise`). The chunked solver keeps one estimator cache per Euler step (`EstimatorCache`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

from stepaudio.decoder.cosyvoice2.config import CFMConfig
from stepaudio.decoder.cosyvoice2.dit import DiT
from stepaudio.decoder.frame_noise import FLOW_NOISE, FrameNoise


class NoiseSource(Protocol):
    """Standard-normal columns `[channels, stop - start]` addressed by mel frame."""

    def columns(self, start: int, stop: int) -> torch.Tensor: ...


class TensorNoise:
    """A fixed noise buffer `[channels, N]` (or `[1, channels, N]`), e.g. the reference's `rand_noise`."""

    def __init__(self, noise: torch.Tensor) -> None:
        if noise.dim() == 3 and noise.shape[0] == 1:
            noise = noise[0]
        if noise.dim() != 2:
            raise ValueError(f"noise buffer must be [channels, N], got {tuple(noise.shape)}")
        self.noise = noise

    def columns(self, start: int, stop: int) -> torch.Tensor:
        if start < 0 or stop > self.noise.shape[1] or stop < start:
            raise ValueError(f"noise columns [{start}, {stop}) outside the buffer of {self.noise.shape[1]}")
        return self.noise[:, start:stop]


def seeded_noise(seed: int, channels: int = 80) -> FrameNoise:
    """Noise columns as a function of (seed, frame): the same frame always sees the same column."""
    return FrameNoise(seed, FLOW_NOISE, channels)


def time_schedule(
    n_timesteps: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """`1 - cos(pi/2 * linspace(0, 1, n + 1))`."""
    t = torch.linspace(0, 1, n_timesteps + 1, device=device, dtype=dtype)
    return 1 - torch.cos(t * 0.5 * math.pi)


def euler_times(t_span: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(t, dt) per step as the reference accumulates them: t += dt, then dt = t_span[k+1] - t."""
    t, dt = t_span[0].unsqueeze(0), t_span[1] - t_span[0]
    out = []
    steps = len(t_span) - 1
    for step in range(1, steps + 1):
        out.append((t, dt))
        t = t + dt
        if step < steps:
            dt = t_span[step + 1] - t
    return out


@dataclass(frozen=True)
class EstimatorCache:
    """Per Euler step and DiT block: conv contexts `[S, D, 2B, 2C, 2]` and keys/values `[S, D, 2B, H, T, 2*hd]`
    (the CFG batch doubles B; along T this chunk's frames come first, then older ones)."""

    cnn: torch.Tensor
    att: torch.Tensor

    @property
    def frames(self) -> int:
        return int(self.att.shape[4])

    def trimmed(self, keep_first: int, keep_last: int) -> EstimatorCache:
        """The reference's `Token2wav.stream` trim: `[:keep_first] ++ [-keep_last:]` along T, when longer."""
        if self.frames <= keep_first + keep_last:
            return self
        att = torch.cat([self.att[..., :keep_first, :], self.att[..., -keep_last:, :]], dim=4)
        return EstimatorCache(self.cnn, att)


class CausalConditionalCFM(torch.nn.Module):
    """Holds the estimator (key prefix `decoder.estimator`); pure functions of their inputs and the noise."""

    def __init__(self, estimator: DiT, config: CFMConfig) -> None:
        super().__init__()
        self.estimator = estimator
        self.config = config

    def _guided(self, out: torch.Tensor) -> torch.Tensor:
        cond, uncond = out.chunk(2, dim=0)
        rate = self.config.inference_cfg_rate
        return (1.0 + rate) * cond - rate * uncond

    def forward(
        self, mu: torch.Tensor, mask: torch.Tensor | None, spks: torch.Tensor, cond: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """mu, cond `[B, 80, T]`, spks `[B, 80]`, noise `[B, 80, T]` -> mel `[B, 80, T]` (whole utterance)."""
        x = noise
        mask_in = None if mask is None else torch.cat([mask, mask], dim=0)
        mu_in = torch.cat([mu, torch.zeros_like(mu)], dim=0)
        spks_in = torch.cat([spks, torch.zeros_like(spks)], dim=0)
        cond_in = torch.cat([cond, torch.zeros_like(cond)], dim=0)
        for t, dt in euler_times(time_schedule(self.config.n_timesteps, mu.device, mu.dtype)):
            out = self.estimator(torch.cat([x, x], dim=0), mask_in, mu_in, torch.cat([t, t], dim=0), spks_in, cond_in)
            x = x + dt * self._guided(out)
        return x

    def forward_chunk(
        self,
        mu: torch.Tensor,
        spks: torch.Tensor,
        cond: torch.Tensor,
        noise: torch.Tensor,
        cache: EstimatorCache | None,
    ) -> tuple[torch.Tensor, EstimatorCache]:
        """One chunk `[B, 80, T]` attending to the cached frames -> mel chunk and the new cache."""
        x = noise
        mu_in = torch.cat([mu, torch.zeros_like(mu)], dim=0)
        spks_in = torch.cat([spks, torch.zeros_like(spks)], dim=0)
        cond_in = torch.cat([cond, torch.zeros_like(cond)], dim=0)
        new_cnn, new_att = [], []
        for step, (t, dt) in enumerate(euler_times(time_schedule(self.config.n_timesteps, mu.device, mu.dtype))):
            out, cnn, att = self.estimator.forward_chunk(
                x.repeat(2, 1, 1), mu_in, t.repeat(2), spks_in, cond_in,
                None if cache is None else cache.cnn[step], None if cache is None else cache.att[step],
            )  # fmt: skip
            x = x + dt * self._guided(out)
            new_cnn.append(cnn)
            new_att.append(att)
        return x, EstimatorCache(torch.stack(new_cnn), torch.stack(new_att))
