"""Harmonic-plus-noise excitation (NSF source) of the HiFT vocoder.

The random parts (initial harmonic phases, additive Gaussian noise) are explicit inputs so that tests are
deterministic and a streaming decoder can carry the phase across chunks (`SineGen.end_phase`).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def upsample_f0(f0: torch.Tensor, factor: int) -> torch.Tensor:
    """f0 [B, T] per mel frame -> [B, 1, T*factor] per sample by nearest repetition."""
    return torch.repeat_interleave(f0[:, None, :], factor, dim=-1)


def draw_sine_inputs(
    batch: int,
    harmonics: int,
    samples: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random initial phases [B, H, 1] uniform in [-pi, pi) (harmonic 0 fixed at 0) and noise [B, H, N]."""
    phase = torch.rand((batch, harmonics, 1), generator=generator, device=device, dtype=dtype)
    phase = phase * (2 * math.pi) - math.pi
    phase[:, 0, :] = 0
    noise = torch.randn((batch, harmonics, samples), generator=generator, device=device, dtype=dtype)
    return phase, noise


class SineGen(nn.Module):
    """F0 -> `harmonic_num + 1` sines; unvoiced samples (f0 <= threshold) get noise only."""

    def __init__(
        self,
        sampling_rate: int,
        harmonic_num: int,
        sine_amp: float,
        noise_std: float,
        voiced_threshold: float,
    ) -> None:
        super().__init__()
        self.sampling_rate = sampling_rate
        self.harmonics = harmonic_num + 1
        self.sine_amp = sine_amp
        self.noise_std = noise_std
        self.voiced_threshold = voiced_threshold

    def _cycles(self, f0_up: torch.Tensor) -> torch.Tensor:
        """Per-sample frequency of each harmonic in cycles/sample: [B, H, N]."""
        k = torch.arange(1, self.harmonics + 1, device=f0_up.device, dtype=f0_up.dtype)
        return f0_up * k[None, :, None] / self.sampling_rate

    def forward(self, f0_up: torch.Tensor, phase: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """f0_up [B, 1, N] Hz, phase [B, H, 1], noise [B, H, N] standard normal -> excitation [B, H, N]."""
        theta = 2 * math.pi * (torch.cumsum(self._cycles(f0_up), dim=-1) % 1)
        sines = self.sine_amp * torch.sin(theta + phase)
        voiced = (f0_up > self.voiced_threshold).to(f0_up.dtype)
        noise_amp = voiced * self.noise_std + (1 - voiced) * self.sine_amp / 3
        return sines * voiced + noise_amp * noise

    def end_phase(self, f0_up: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """The phase to pass with the next chunk so that the sines continue where this chunk ends."""
        total = torch.sum(self._cycles(f0_up).double(), dim=-1, keepdim=True) % 1
        return torch.remainder(phase + (2 * math.pi * total).to(phase.dtype) + math.pi, 2 * math.pi) - math.pi


class SourceModuleHnNSF(nn.Module):
    """SineGen, then `l_linear` mixes the harmonics to one channel, then tanh."""

    def __init__(
        self,
        sampling_rate: int,
        harmonic_num: int,
        sine_amp: float,
        noise_std: float,
        voiced_threshold: float,
    ) -> None:
        super().__init__()
        self.l_sin_gen = SineGen(sampling_rate, harmonic_num, sine_amp, noise_std, voiced_threshold)
        self.l_linear = nn.Linear(harmonic_num + 1, 1)

    def forward(self, f0_up: torch.Tensor, phase: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """f0_up [B, 1, N] -> merged excitation [B, 1, N]."""
        sines = self.l_sin_gen(f0_up, phase, noise)
        return torch.tanh(self.l_linear(sines.transpose(1, 2))).transpose(1, 2)
