"""HiFT vocoder (CosyVoice `HiFTGenerator`): mel [B, 80, T] -> waveform [B, T * 256] at 22.05 kHz.

Pipeline: F0 predictor -> NSF harmonic source -> STFT of the source; mel -> conv_pre -> per stage
(leaky ReLU, ConvTranspose1d upsample, + source branch, mean of ResBlocks) -> conv_post -> iSTFT head.
The F0/source half is separate from the conv half so a streaming decoder can drive it chunk by chunk.
Weights are plain (weight norm folded at load), run in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.decoder.cosyvoice1.f0 import ConvRNNF0Predictor
from stepaudio.decoder.cosyvoice1.hift_config import HiFTConfig
from stepaudio.decoder.cosyvoice1.source import SourceModuleHnNSF, draw_sine_inputs, upsample_f0


class Snake(nn.Module):
    """x + sin²(alpha·x) / (alpha + 1e-9), alpha per channel on a linear (not log) scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha[None, :, None]
        return x + (1.0 / (alpha + 1e-9)) * torch.sin(x * alpha).pow(2)


class ResBlock(nn.Module):
    """Per dilation d: x += conv2(snake2(conv1_d(snake1(x)))), 'same' padding."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=d * (kernel_size - 1) // 2)
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2) for _ in dilations
        )
        self.activations1 = nn.ModuleList(Snake(channels) for _ in dilations)
        self.activations2 = nn.ModuleList(Snake(channels) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv1, conv2, act1, act2 in zip(
            self.convs1, self.convs2, self.activations1, self.activations2, strict=True
        ):
            x = x + conv2(act2(conv1(act1(x))))
        return x


class HiFTGenerator(nn.Module):
    """Module names follow the CosyVoice checkpoint keys (`conv_pre`, `ups`, `resblocks`, ...)."""

    stft_window: torch.Tensor

    def __init__(self, config: HiFTConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.f0_predictor = ConvRNNF0Predictor(c.f0_predictor)
        self.m_source = SourceModuleHnNSF(
            c.sampling_rate, c.nb_harmonics, c.nsf_alpha, c.nsf_sigma, c.nsf_voiced_threshold
        )
        self.conv_pre = nn.Conv1d(c.in_channels, c.base_channels, 7, padding=3)
        self.ups = nn.ModuleList(
            nn.ConvTranspose1d(c.base_channels // 2**i, c.base_channels // 2 ** (i + 1), k, u, padding=(k - u) // 2)
            for i, (u, k) in enumerate(zip(c.upsample_rates, c.upsample_kernel_sizes, strict=True))
        )
        # The source STFT runs at the final frame rate; stage i needs it downsampled to its own rate.
        stft_channels = c.n_fft + 2
        self.source_downs = nn.ModuleList()
        self.source_resblocks = nn.ModuleList()
        n_stages = len(c.upsample_rates)
        for i, (k, d) in enumerate(zip(c.source_resblock_kernel_sizes, c.source_resblock_dilation_sizes, strict=True)):
            ch = c.base_channels // 2 ** (i + 1)
            rate = _prod(c.upsample_rates[i + 1 : n_stages])
            if rate == 1:
                self.source_downs.append(nn.Conv1d(stft_channels, ch, 1))
            else:
                self.source_downs.append(nn.Conv1d(stft_channels, ch, rate * 2, rate, padding=rate // 2))
            self.source_resblocks.append(ResBlock(ch, k, tuple(d)))
        self.resblocks = nn.ModuleList(
            ResBlock(c.base_channels // 2 ** (i + 1), k, tuple(d))
            for i in range(n_stages)
            for k, d in zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes, strict=True)
        )
        self.conv_post = nn.Conv1d(c.base_channels // 2**n_stages, stft_channels, 7, padding=3)
        window = torch.hann_window(c.n_fft, periodic=True, dtype=torch.float64).float()
        self.register_buffer("stft_window", window, persistent=False)

    # --- F0 and excitation (separable for streaming) -------------------------------------------------
    def predict_f0(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [B, 80, T] -> f0 [B, T] in Hz."""
        return self.f0_predictor(mel)

    def excitation(
        self,
        f0: torch.Tensor,
        phase: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """f0 [B, T] -> merged NSF source [B, 1, T * upsample_total]; missing phase/noise are drawn."""
        f0_up = upsample_f0(f0, self.config.upsample_total)
        if phase is None or noise is None:
            drawn_phase, drawn_noise = draw_sine_inputs(
                f0.shape[0], self.config.nb_harmonics + 1, f0_up.shape[-1],
                generator=generator, device=f0.device, dtype=f0.dtype,
            )  # fmt: skip
            phase = drawn_phase if phase is None else phase
            noise = drawn_noise if noise is None else noise
        return self.m_source(f0_up, phase, noise)

    def source_stft(self, source: torch.Tensor) -> torch.Tensor:
        """source [B, 1, N] -> [B, n_fft + 2, N / hop + 1]: real parts then imaginary parts."""
        n_fft = self.config.n_fft
        spec = torch.stft(
            source.squeeze(1), n_fft, self.config.hop_len, n_fft,
            window=self.stft_window, center=True, pad_mode="reflect", return_complex=True,
        )  # fmt: skip
        return torch.cat([spec.real, spec.imag], dim=1)

    # --- conv stack and iSTFT head ----------------------------------------------------------------
    def backbone(self, mel: torch.Tensor, s_stft: torch.Tensor) -> torch.Tensor:
        """mel [B, 80, T] + source STFT -> conv_post output [B, n_fft + 2, T * upsample_total / hop + 1]."""
        c = self.config
        n_kernels = len(c.resblock_kernel_sizes)
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, c.lrelu_slope))
            if i == len(self.ups) - 1:
                x = F.pad(x, (1, 0), mode="reflect")
            x = x + self.source_resblocks[i](self.source_downs[i](s_stft))
            blocks = self.resblocks[i * n_kernels : (i + 1) * n_kernels]
            acc = blocks[0](x)
            for block in blocks[1:]:
                acc = acc + block(x)
            x = acc / n_kernels
        # The reference uses leaky ReLU's default slope (0.01) here, not lrelu_slope.
        return self.conv_post(F.leaky_relu(x))

    def istft_head(self, conv_out: torch.Tensor) -> torch.Tensor:
        """conv_post output -> waveform [B, N]: magnitude exp (clipped at 100), phase sin(channels)."""
        c = self.config
        bins = c.stft_bins
        magnitude = torch.clamp(torch.exp(conv_out[:, :bins]), max=1e2)
        phase = torch.sin(conv_out[:, bins:])
        spec = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
        wav = torch.istft(spec, c.n_fft, c.hop_len, c.n_fft, window=self.stft_window, center=True)
        return torch.clamp(wav, -c.audio_limit, c.audio_limit)

    def vocode(self, mel: torch.Tensor, s_stft: torch.Tensor) -> torch.Tensor:
        """mel + precomputed source STFT -> waveform [B, T * upsample_total]."""
        return self.istft_head(self.backbone(mel, s_stft))

    def forward(
        self,
        mel: torch.Tensor,
        phase: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """mel [B, 80, T] -> waveform [B, T * upsample_total]; batch items of different lengths are
        padded by the caller and trimmed to length * upsample_total afterwards."""
        source = self.excitation(self.predict_f0(mel), phase, noise, generator)
        return self.vocode(mel, self.source_stft(source))


def _prod(values: tuple[int, ...]) -> int:
    out = 1
    for v in values:
        out *= v
    return out
