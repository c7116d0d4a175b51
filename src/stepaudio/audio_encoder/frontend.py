"""Step-Audio 2's audio front end: 16 kHz audio cut into 25 s pieces, a 128-bin Whisper log-mel per piece,
mels padded into one batch, and the number of `<audio_patch>` placeholders each piece fills.

The mel is openai-whisper's `log_mel_spectrogram(wave, 128, padding=479)`: the waveform right-padded with
479 zeros, so a piece of N samples gives (N + 479) // 160 frames (REFERENCE-SA2.md §2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from stepaudio.audio.features import WHISPER_HOP, whisper_log_mel
from stepaudio.errors import AudioError

SAMPLE_RATE = 16000
PIECE_SAMPLES = 25 * SAMPLE_RATE  # each 25 s piece gets its own mel and its own <audio_start>..<audio_end> block
MEL_PAD_SAMPLES = 479
N_MELS = 128


def split_pieces(wave: torch.Tensor) -> list[torch.Tensor]:
    """A mono 16 kHz waveform [N] as consecutive pieces of at most 25 s (the last one holds the rest)."""
    if wave.ndim != 1:
        raise AudioError(f"expected a mono waveform [N], got shape {list(wave.shape)}")
    if wave.numel() == 0:
        raise AudioError("empty audio")
    return list(wave.split(PIECE_SAMPLES))


def mel_frames(num_samples: int) -> int:
    """Mel frames of a piece of `num_samples` samples."""
    return (num_samples + MEL_PAD_SAMPLES) // WHISPER_HOP


def log_mel(piece: torch.Tensor, n_mels: int = N_MELS) -> torch.Tensor:
    """The encoder input of one piece: [N] -> [n_mels, mel_frames(N)], in the waveform's dtype."""
    if piece.ndim != 1:
        raise AudioError(f"expected a mono waveform [N], got shape {list(piece.shape)}")
    return whisper_log_mel(F.pad(piece, (0, MEL_PAD_SAMPLES)), n_mels)


def audio_mels(wave: torch.Tensor, n_mels: int = N_MELS) -> list[torch.Tensor]:
    """One mel per 25 s piece of `wave`, in order."""
    return [log_mel(piece, n_mels) for piece in split_pieces(wave)]


def pad_mels(mels: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mels [n_mels, T_i] as one zero-padded batch [B, n_mels, max T] and their lengths [B].

    The length is T - 2, as the reference's `padding_mels` reports it; the encoder's key mask and output
    lengths are built from that number, so it is part of the model's input, not a bookkeeping detail.
    """
    if not mels:
        raise ValueError("no mels to batch")
    if any(m.ndim != 2 or m.shape[0] != mels[0].shape[0] for m in mels):
        raise ValueError(f"mels must all be [n_mels, T], got {[list(m.shape) for m in mels]}")
    width = max(m.shape[1] for m in mels)
    batch = torch.stack([F.pad(m, (0, width - m.shape[1])) for m in mels])
    lengths = torch.tensor([m.shape[1] - 2 for m in mels], dtype=torch.long, device=batch.device)
    return batch, lengths


def placeholder_count(frames: int) -> int:
    """`<audio_patch>` tokens a piece of `frames` mel frames fills: the adaptor's output length for the
    real model (k3 s2 convs: 12.5 per second; 3 s -> 38, 25 s -> 313), as the reference's `compute_token_num`."""
    encoded = ((frames - 2) + 1) // 2 // 2
    return (encoded + 2 - 3) // 2 + 1
