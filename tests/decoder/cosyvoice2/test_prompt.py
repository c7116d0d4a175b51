from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from stepaudio.decoder.cosyvoice2.prompt import Prompt, fit_prompt_mel, prepare_prompt, prompt_mel_24k
from stepaudio.errors import AudioError


class FakeSpeaker:
    """Stands in for CAM++: records what it was given."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def embed(self, wav_16k: torch.Tensor) -> torch.Tensor:
        self.seen.append(wav_16k)
        return torch.ones(192)


def test_conformance_prompt_mel(t2w_dir: Path) -> None:
    vectors = load_file(str(t2w_dir / "prompt_mel24k.safetensors"))
    mel = prompt_mel_24k(vectors["wave_24k"])
    assert mel.shape == vectors["mel"].shape == (1, 80, (vectors["wave_24k"].shape[1] - 480) // 480 + 1)
    torch.testing.assert_close(mel, vectors["mel"], atol=1e-4, rtol=0)


def test_fit_pads_with_the_last_frame_or_cuts(offline: dict[str, torch.Tensor]) -> None:
    raw, fitted = offline["inputs.prompt_mel_raw"][0], offline["inputs.prompt_mel"][0]
    assert torch.equal(fit_prompt_mel(raw, offline["inputs.prompt_tokens"].shape[1]), fitted)
    assert torch.equal(fit_prompt_mel(raw, 3), raw[:6])


def test_prepare_prompt_follows_the_reference_rates() -> None:
    rate = 22050
    samples = np.sin(np.arange(rate) * 2 * np.pi * 220 / rate).astype(np.float32) * 0.3
    seen: list[np.ndarray] = []

    def tokenize(wav16: np.ndarray) -> list[int]:
        seen.append(wav16)
        return list(range(wav16.shape[0] // 640))

    speaker = FakeSpeaker()
    prompt = prepare_prompt(samples, rate, tokenize, speaker)  # type: ignore[arg-type]
    assert seen[0].shape[0] == speaker.seen[0].shape[0] == 16000
    assert prompt.tokens.tolist() == list(range(25)) and prompt.mel.shape == (50, 80)
    with pytest.raises(AudioError, match="no speech tokens"):
        prepare_prompt(samples, rate, lambda wav: [], speaker)  # type: ignore[arg-type]


def test_prompt_checks_its_shapes() -> None:
    with pytest.raises(ValueError, match="whole number"):
        Prompt(torch.arange(4), torch.zeros(7, 80), torch.zeros(192))
    with pytest.raises(ValueError, match="non-empty"):
        Prompt(torch.zeros(0, dtype=torch.int64), torch.zeros(0, 80), torch.zeros(192))
