"""The voice prompt of the 24 kHz decoder: its speech tokens, its 24 kHz mel and its CAM++ x-vector.

As the reference `Token2wav._prepare_prompt`: tokens from the 16 kHz wav (S3 tokenizer v2, 25 Hz; the ONNX
graph runs in the tokenizer layer, so the caller passes it in as `PromptTokenizer`), the x-vector from the
same 16 kHz wav (CAM++), the mel from the wav at 24 kHz (n_fft 1920, hop 480, 80 bins up to 8 kHz, natural
log), replicate-padded or cut to exactly `up_rate` frames per prompt token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from stepaudio.audio.features import matcha_mel
from stepaudio.audio.io import resample, to_mono
from stepaudio.decoder.speaker import CAMPPLUS_SAMPLE_RATE, CampPlusEmbedder
from stepaudio.errors import AudioError

MEL_SAMPLE_RATE = 24000
MEL_N_FFT = 1920
MEL_HOP = 480
MEL_BINS = 80

# 16 kHz mono float32 samples -> speech tokens (25 Hz), e.g. the S3 tokenizer v2 ONNX graph
PromptTokenizer = Callable[[np.ndarray], Sequence[int]]


def prompt_mel_24k(wav_24k: torch.Tensor) -> torch.Tensor:
    """24 kHz waveform `[N]` or `[B, N]` -> log-mel `[80, T]` / `[B, 80, T]`, T = (N - 480) // 480 + 1."""
    return matcha_mel(
        wav_24k, n_fft=MEL_N_FFT, num_mels=MEL_BINS, sampling_rate=MEL_SAMPLE_RATE, hop_size=MEL_HOP,
        win_size=MEL_N_FFT, fmin=0.0, fmax=8000.0,
    )  # fmt: skip


def fit_prompt_mel(mel: torch.Tensor, n_tokens: int, up_rate: int = 2) -> torch.Tensor:
    """Time-major mel `[T, 80]` -> exactly `n_tokens * up_rate` frames: the last frame repeated, or cut."""
    want = n_tokens * up_rate
    if mel.shape[0] == 0:
        raise AudioError("the prompt mel has no frames")
    if mel.shape[0] >= want:
        return mel[:want]
    return torch.cat([mel, mel[-1:].expand(want - mel.shape[0], -1)], dim=0)


@dataclass(frozen=True)
class Prompt:
    """tokens `[N1]` int64, mel `[N1 * up_rate, 80]` (already fitted), raw x-vector `[192]`."""

    tokens: torch.Tensor
    mel: torch.Tensor
    embedding: torch.Tensor

    def __post_init__(self) -> None:
        if self.tokens.dim() != 1 or self.tokens.numel() == 0:
            raise ValueError(f"prompt tokens must be a non-empty [N1], got {tuple(self.tokens.shape)}")
        if self.mel.dim() != 2 or self.mel.shape[1] != MEL_BINS:
            raise ValueError(f"prompt mel must be [T1, {MEL_BINS}], got {tuple(self.mel.shape)}")
        if self.mel.shape[0] % self.tokens.numel():
            raise ValueError(f"prompt mel ({self.mel.shape[0]} frames) is not a whole number of frames per token "
                             f"({self.tokens.numel()} tokens): use fit_prompt_mel")
        if self.embedding.dim() != 1:
            raise ValueError(f"prompt embedding must be [D], got {tuple(self.embedding.shape)}")

    @property
    def frames(self) -> int:
        return int(self.mel.shape[0])


def prepare_prompt(
    samples: np.ndarray,
    sample_rate: int,
    tokenize: PromptTokenizer,
    speaker: CampPlusEmbedder,
    up_rate: int = 2,
) -> Prompt:
    """A prompt wav (any rate, mono or not) -> Prompt, as the reference prepares it."""
    mono = to_mono(np.asarray(samples, dtype=np.float32))
    if mono.size == 0 or not np.all(np.isfinite(mono)):
        raise AudioError("the prompt audio is empty or not finite")
    wav16 = resample(mono, sample_rate, CAMPPLUS_SAMPLE_RATE)
    tokens = torch.tensor(list(tokenize(wav16)), dtype=torch.int64)
    if tokens.numel() == 0:
        raise AudioError("the prompt audio gave no speech tokens (too short?)")
    embedding = speaker.embed(torch.from_numpy(wav16.copy())).float()
    wav24 = torch.from_numpy(resample(mono, sample_rate, MEL_SAMPLE_RATE).copy())
    if wav24.numel() < MEL_N_FFT:
        raise AudioError("the prompt audio is too short for one 24 kHz mel frame")
    mel = prompt_mel_24k(wav24).transpose(0, 1).contiguous().float()
    return Prompt(tokens, fit_prompt_mel(mel, int(tokens.numel()), up_rate), embedding)
