from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepaudio.audio_encoder.config import AudioEncoderConfig
from stepaudio.audio_encoder.frontend import (
    PIECE_SAMPLES,
    audio_mels,
    log_mel,
    mel_frames,
    pad_mels,
    placeholder_count,
    split_pieces,
)
from stepaudio.audio_encoder.model import adapter_lengths, encoder_lengths
from stepaudio.errors import AudioError

TOL = {"atol": 1e-4, "rtol": 0.0}


def test_pieces_are_25_seconds_with_the_rest_last() -> None:
    wave = torch.arange(2 * PIECE_SAMPLES + 16000, dtype=torch.float32)
    pieces = split_pieces(wave)
    assert [p.numel() for p in pieces] == [PIECE_SAMPLES, PIECE_SAMPLES, 16000]
    assert torch.equal(torch.cat(pieces), wave)
    assert [p.numel() for p in split_pieces(wave[:PIECE_SAMPLES])] == [PIECE_SAMPLES]
    with pytest.raises(AudioError, match="empty"):
        split_pieces(torch.zeros(0))
    with pytest.raises(AudioError, match="mono"):
        split_pieces(torch.zeros(2, 100))


def test_mel_frames_and_pieces_mels() -> None:
    wave = 0.1 * torch.randn(PIECE_SAMPLES + 4800, generator=torch.Generator().manual_seed(0))
    mels = audio_mels(wave)
    assert [m.shape for m in mels] == [(128, mel_frames(PIECE_SAMPLES)), (128, mel_frames(4800))]
    assert mel_frames(PIECE_SAMPLES) == 2502 and mel_frames(4800) == 32
    assert log_mel(wave[:4800], n_mels=80).shape == (80, 32)
    assert torch.equal(mels[1], log_mel(wave[PIECE_SAMPLES:]))  # each piece has its own max - 8 floor


def test_pad_mels_pads_with_zeros_and_reports_t_minus_2() -> None:
    a, b = torch.randn(128, 30), torch.randn(128, 17)
    batch, lengths = pad_mels([a, b])
    assert batch.shape == (2, 128, 30) and lengths.tolist() == [28, 15]
    assert torch.equal(batch[1, :, :17], b) and not batch[1, :, 17:].any()
    with pytest.raises(ValueError, match="no mels"):
        pad_mels([])
    with pytest.raises(ValueError, match="n_mels"):
        pad_mels([a, torch.randn(80, 10)])


def test_placeholder_count_is_the_real_adaptor_length() -> None:
    """12.5 placeholders per second: the count a prompt reserves is what the real encoder + adaptor emit."""
    assert placeholder_count(mel_frames(3 * 16000)) == 38
    assert placeholder_count(mel_frames(PIECE_SAMPLES)) == 313
    real = AudioEncoderConfig(
        n_mels=128, n_audio_ctx=1500, n_audio_state=1280, n_audio_head=20, n_audio_layer=32, llm_dim=3584
    )
    frames = torch.arange(3, 2503)
    expected = adapter_lengths(encoder_lengths(frames - 2), real)
    assert [placeholder_count(int(t)) for t in frames] == expected.tolist()


@pytest.mark.conformance
def test_conformance_mel(conformance_dir: Path) -> None:
    folder = conformance_dir / "step-audio2" / "encoder"
    vectors = load_file(folder / "mel.safetensors")
    meta = json.loads((folder / "meta.json").read_text())
    n_mels = AudioEncoderConfig.from_json(folder).n_mels
    for n, frames in enumerate(meta["mel_T"], start=1):
        wave = vectors[f"wave{n}"]
        assert mel_frames(wave.numel()) == frames
        torch.testing.assert_close(log_mel(wave, n_mels), vectors[f"mel{n}"], **TOL)
    assert [placeholder_count(t) for t in meta["mel_T"]] == meta["compute_token_num"]
    batch, lengths = pad_mels([vectors["mel1"], vectors["mel2"]])
    encoder = load_file(folder / "vectors.safetensors")
    assert torch.equal(batch, encoder["inputs.mels"]) and torch.equal(lengths, encoder["inputs.mel_lens"])
