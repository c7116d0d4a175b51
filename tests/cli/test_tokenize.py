"""`stepaudio tokenize` on a tiny random tokenizer folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stepaudio.cli.main import main
from stepaudio.testing.tiny_tokenizer import write_tiny_tokenizer_dir
from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_tiny_tokenizer_dir(root / "Step-Audio-Tokenizer", seed=11)
    return root


@pytest.fixture(scope="module")
def wav_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    n = 24_000
    t = np.arange(n) / 24_000
    wav = 0.3 * np.sin(2 * np.pi * (160 + 300 * t) * t) + 0.02 * np.random.default_rng(0).standard_normal(n)
    path = tmp_path_factory.mktemp("audio") / "in.wav"
    sf.write(path, wav.astype(np.float32), 24_000)
    return path


def test_formats_print_the_tokenizer_output(
    model_path: Path, wav_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.set_num_threads(1)
    want = StepAudioTokenizer.from_pretrained(model_path, onnx_threads=1).encode(wav_path)
    assert want.n_groups > 0
    base = ["tokenize", str(wav_path), "--model-path", str(model_path), "--threads", "1"]
    assert main(base) == 0
    assert capsys.readouterr().out.split() == [str(i) for i in want.lm_ids()]
    assert main([*base, "--format", "text"]) == 0
    assert capsys.readouterr().out.strip() == want.text()
    assert main([*base, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == {"vq02": list(want.vq02), "vq06": list(want.vq06), "lm_ids": want.lm_ids()}
    trimmed = StepAudioTokenizer.from_pretrained(model_path, onnx_threads=1).encode(wav_path, trim=True)
    assert main([*base, "--trim", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["vq06"] == list(trimmed.vq06)


def test_errors_are_reported_not_raised(
    model_path: Path, wav_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tokenize", str(wav_path), "--model-path", str(tmp_path)]) == 2
    assert "Step-Audio-Tokenizer" in capsys.readouterr().err
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    assert main(["tokenize", str(bad), "--model-path", str(model_path), "--threads", "1"]) == 2
    assert "error" in capsys.readouterr().err
