"""HiFT at 24 kHz: the shared HiFT conv stack with the `SineGen2` excitation (480 samples per mel frame).

The conv half (conv_pre, upsampling with source fusion, resblocks, iSTFT head) and the F0 predictor are the
v1 family's `HiFTGenerator` with 24 kHz sizes. What differs is the source: `SineGen2` integrates the phase
at the mel frame rate (linear down-sampling of the per-sample increments, cumulative sum, linear
up-sampling back), so the sines are smooth across frames. Its two random draws per call are injectable
(`HiFTDraws`): the initial phases `[B, H]` (uniform in [0, 1) cycles, harmonic 0 zeroed) and the noise
`[B, L, H]`; the reference's second draw (the unused noise branch) is not made. The phase draw is added to
sample 0 only, which the down-sampling to the frame rate never reads (it reads samples 239/240 of each frame):
it does not change the output, in the reference either, but is drawn to keep the draw sequence.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F

from stepaudio.decoder.cosyvoice1.hift_config import HiFTConfig
from stepaudio.decoder.cosyvoice1.vocoder import HiFTGenerator


class HiFTDraws(Protocol):
    """The random inputs of one HiFT call."""

    def phase(self, batch: int, harmonics: int) -> torch.Tensor:
        """Initial phases `[batch, harmonics]` in cycles, uniform in [0, 1)."""
        ...

    def noise(self, shape: tuple[int, int, int]) -> torch.Tensor:
        """Standard-normal `[B, L, H]`."""
        ...


class SeededDraws:
    """Draws from one seeded generator, advancing call after call (a stream gets fresh phases per chunk)."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def phase(self, batch: int, harmonics: int) -> torch.Tensor:
        return torch.rand(batch, harmonics, generator=self.generator)

    def noise(self, shape: tuple[int, int, int]) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator)


class ScriptedDraws:
    """Given phases, consumed in order, and noise by tiling: `noise[flat i] = base[i % len(base)]` (row-major
    over `[B, L, H]`). This is how the conformance run injected the reference's draws."""

    def __init__(self, phases: list[torch.Tensor], noise_base: torch.Tensor) -> None:
        self.phases = list(phases)
        self.noise_base = noise_base.reshape(-1)

    def phase(self, batch: int, harmonics: int) -> torch.Tensor:
        if not self.phases:
            raise ValueError("ScriptedDraws: no phase draw left")
        return self.phases.pop(0).reshape(batch, harmonics)

    def noise(self, shape: tuple[int, int, int]) -> torch.Tensor:
        total = shape[0] * shape[1] * shape[2]
        index = torch.arange(total) % self.noise_base.numel()
        return self.noise_base[index].reshape(shape)


class SineGen2Source:
    """f0 per sample -> merged excitation `tanh(l_linear(sines * uv + noise))`, phase integrated per frame.

    `l_linear` is the checkpoint's `m_source.l_linear` (the generator's module, shared)."""

    def __init__(self, config: HiFTConfig, l_linear: torch.nn.Linear) -> None:
        self.config = config
        self.harmonics = config.nb_harmonics + 1
        self.scale = config.upsample_total
        self.l_linear = l_linear

    def sines(self, f0_up: torch.Tensor, draws: HiFTDraws) -> torch.Tensor:
        """f0_up `[B, L, 1]` Hz -> excitation `[B, L, H]` (before the linear merge)."""
        c = self.config
        k = torch.arange(1, self.harmonics + 1, device=f0_up.device, dtype=f0_up.dtype)
        rad = (f0_up * k / c.sampling_rate) % 1
        start = draws.phase(f0_up.shape[0], self.harmonics).to(rad)
        start[:, 0] = 0
        rad[:, 0, :] = rad[:, 0, :] + start
        rad = F.interpolate(rad.transpose(1, 2), scale_factor=1 / self.scale, mode="linear").transpose(1, 2)
        phase = torch.cumsum(rad, dim=1) * 2 * math.pi
        phase = F.interpolate(phase.transpose(1, 2) * self.scale, scale_factor=self.scale, mode="linear")
        sines = torch.sin(phase.transpose(1, 2)) * c.nsf_alpha
        uv = (f0_up > c.nsf_voiced_threshold).to(f0_up.dtype)
        noise_amp = uv * c.nsf_sigma + (1 - uv) * c.nsf_alpha / 3
        noise = noise_amp * draws.noise((sines.shape[0], sines.shape[1], sines.shape[2])).to(sines)
        return sines * uv + noise

    def __call__(self, f0_up: torch.Tensor, draws: HiFTDraws) -> torch.Tensor:
        """f0_up `[B, L, 1]` -> source `[B, 1, L]`."""
        return torch.tanh(self.l_linear(self.sines(f0_up, draws))).transpose(1, 2)


class HiFT24k:
    """mel `[B, 80, T]` -> waveform `[B, 480 T]` at 24 kHz, and the source it used (for streaming)."""

    def __init__(self, generator: HiFTGenerator) -> None:
        self.generator = generator
        self.config = generator.config
        self.source = SineGen2Source(self.config, generator.m_source.l_linear)

    @property
    def sample_rate(self) -> int:
        return self.config.sampling_rate

    @property
    def samples_per_frame(self) -> int:
        return self.config.upsample_total

    def f0(self, mel: torch.Tensor) -> torch.Tensor:
        """mel `[B, 80, T]` -> F0 `[B, T]` in Hz."""
        return self.generator.predict_f0(mel)

    def excitation(self, f0: torch.Tensor, draws: HiFTDraws) -> torch.Tensor:
        """F0 `[B, T]` -> source `[B, 1, 480 T]` (nearest up-sampled F0 through SineGen2)."""
        f0_up = torch.repeat_interleave(f0[:, :, None], self.samples_per_frame, dim=1)
        return self.source(f0_up, draws)

    def decode(self, mel: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """mel + source -> waveform `[B, 480 T]`, clipped to the audio limit."""
        g = self.generator
        return g.vocode(mel, g.source_stft(source))

    @torch.inference_mode()
    def __call__(
        self, mel: torch.Tensor, draws: HiFTDraws, cache_source: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """mel `[B, 80, T]` -> (waveform `[B, 480 T]`, source `[B, 1, 480 T]`); `cache_source` `[B, 1, S]`
        replaces the first S source samples (the reference's glitch guard when streaming)."""
        source = self.excitation(self.f0(mel), draws)
        if cache_source is not None and cache_source.shape[2] > 0:
            source = source.clone()
            source[:, :, : cache_source.shape[2]] = cache_source
        return self.decode(mel, source), source
