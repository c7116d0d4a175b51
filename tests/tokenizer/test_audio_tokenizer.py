"""StepAudioTokenizer on a tiny random folder in the real release layout."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stepaudio.audio.io import peak_normalize, resample
from stepaudio.audio.trim import trim_silence
from stepaudio.errors import AudioError, CheckpointError
from stepaudio.testing.tiny_tokenizer import write_tiny_tokenizer_dir
from stepaudio.text.vocab import STEP1
from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer
from stepaudio.tokenizer.interleave import deinterleave, lm_to_flow, parse_audio_tokens
from stepaudio.tokenizer.linguistic import PARAFORMER_SUBDIR
from stepaudio.tokenizer.streaming import Vq06Policy, code_agreement

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny ops: one thread is faster


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_tokenizer_dir(tmp_path_factory.mktemp("models") / "Step-Audio-Tokenizer", seed=2)


@pytest.fixture(scope="module")
def tokenizer(tiny_dir: Path) -> StepAudioTokenizer:
    return StepAudioTokenizer.from_pretrained(tiny_dir, onnx_threads=1)


def speech_like(seconds: float, rate: int = 16_000, seed: int = 0) -> np.ndarray:
    """A gliding tone with syllable-rate loudness, noise, and silence around it."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    tone = np.sin(2 * np.pi * (150 + 200 * t) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    wav = 0.3 * tone + 0.02 * np.random.default_rng(seed).standard_normal(n)
    wav[: int(0.3 * rate)] = 0.0
    wav[-int(0.3 * rate) :] *= 0.001
    return wav.astype(np.float32)


def test_codes_come_from_the_prepared_audio(tokenizer: StepAudioTokenizer) -> None:
    wav = 0.2 * speech_like(2.1)
    codes = tokenizer.encode(wav, sample_rate=16_000)
    prepared = peak_normalize(wav)
    assert np.allclose(tokenizer.prepare(wav, 16_000), prepared)
    assert list(codes.vq02) == tokenizer.linguistic.encode(torch.from_numpy(prepared))
    assert list(codes.vq06) == tokenizer.semantic.encode(prepared)
    assert len(codes.vq06) == 53  # 25 Hz: ceil(210 mel frames / 4)
    assert abs(len(codes.vq02) - 2.1 * 50 / 3) <= 2  # ~16.7 Hz
    assert all(0 <= c < 1024 for c in codes.vq02) and all(0 <= c < 4096 for c in codes.vq06)
    assert len(set(codes.vq02)) > 1 and len(set(codes.vq06)) > 1


def test_ids_and_text_are_the_interleaved_codes(tokenizer: StepAudioTokenizer) -> None:
    wav = speech_like(1.5, seed=4)
    codes = tokenizer.encode(wav, 16_000)
    ids = tokenizer.lm_ids(wav, 16_000)
    assert len(ids) == 5 * codes.n_groups > 0
    assert all(i >= STEP1.audio_offset for i in ids)
    back = deinterleave(lm_to_flow(ids))
    assert back.vq02 == codes.vq02[: 2 * codes.n_groups] and back.vq06 == codes.vq06[: 3 * codes.n_groups]
    text = tokenizer.audio_text(wav, 16_000)
    assert text.startswith(f"<audio_{codes.vq02[0]}><audio_{codes.vq02[1]}><audio_{1024 + codes.vq06[0]}>")
    assert parse_audio_tokens(text) == ids


def test_files_are_resampled_and_trimmed_like_the_reference(tokenizer: StepAudioTokenizer, tmp_path: Path) -> None:
    wav = speech_like(1.8, rate=22_050, seed=5)
    path = tmp_path / "prompt.wav"
    sf.write(path, wav, 22_050, subtype="FLOAT")
    prepared = peak_normalize(resample(wav, 22_050, 16_000))
    assert tokenizer.encode(path) == tokenizer.encode_prepared(prepared)
    trimmed = trim_silence(prepared, 16_000)
    assert trimmed.shape[0] < prepared.shape[0]
    assert tokenizer.encode(path, trim=True) == tokenizer.encode_prepared(trimmed)
    assert tokenizer.encode(path, trim=True) != tokenizer.encode(path)


def test_model_path_holding_the_folder_is_accepted(tiny_dir: Path) -> None:
    parent = StepAudioTokenizer.from_pretrained(tiny_dir.parent, onnx_threads=1)
    wav = speech_like(0.8, seed=6)
    direct = StepAudioTokenizer.from_pretrained(tiny_dir, onnx_threads=1)
    assert parent.encode(wav, 16_000) == direct.encode(wav, 16_000)


@pytest.mark.parametrize(
    "missing",
    [
        "linguistic_tokenizer.npy",
        "speech_tokenizer_v1.onnx",
        f"{PARAFORMER_SUBDIR}/model.pt",
        f"{PARAFORMER_SUBDIR}/config.yaml",
        f"{PARAFORMER_SUBDIR}/am.mvn",
    ],
)
def test_missing_file_is_named(tiny_dir: Path, tmp_path: Path, missing: str) -> None:
    copy = tmp_path / "Step-Audio-Tokenizer"
    shutil.copytree(tiny_dir, copy)
    (copy / missing).unlink()
    with pytest.raises(CheckpointError, match=missing.rsplit("/", 1)[-1]):
        StepAudioTokenizer.from_pretrained(copy)


def test_absent_folder_and_bad_codebook_are_checkpoint_errors(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        StepAudioTokenizer.from_pretrained(tmp_path / "nowhere")
    copy = tmp_path / "Step-Audio-Tokenizer"
    shutil.copytree(tiny_dir, copy)
    np.save(copy / "linguistic_tokenizer.npy", np.zeros((1024, 7), np.float32))
    with pytest.raises(CheckpointError, match="codebook shape"):
        StepAudioTokenizer.from_pretrained(copy)


def test_bad_audio_is_an_audio_error(tokenizer: StepAudioTokenizer, tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="empty"):
        tokenizer.encode(np.zeros(0, np.float32), 16_000)
    with pytest.raises(AudioError, match="NaN"):
        tokenizer.encode(np.full(1000, np.nan, np.float32), 16_000)
    with pytest.raises(AudioError, match="sample rate"):
        tokenizer.encode(np.zeros(1000, np.float32))
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00")
    with pytest.raises(AudioError):
        tokenizer.encode(broken)
    with pytest.raises(AudioError, match="prepared"):
        tokenizer.encode_prepared(np.zeros(1000, np.float64))


@pytest.mark.realmodel
def test_real_release_folder(tiny_dir: Path) -> None:
    """The real folder loads; its graph has our export's signature; 25 Hz and ~16.7 Hz codes; streaming agrees."""
    root = os.environ.get("STEPAUDIO_MODEL_DIR")
    if not root or not (Path(root) / "Step-Audio-Tokenizer" / "speech_tokenizer_v1.onnx").is_file():
        pytest.skip("set STEPAUDIO_MODEL_DIR to a folder holding Step-Audio-Tokenizer/")
    real = StepAudioTokenizer.from_pretrained(root)
    tiny = StepAudioTokenizer.from_pretrained(tiny_dir)
    for ours, theirs in zip(tiny.semantic.session.get_inputs(), real.semantic.session.get_inputs(), strict=True):
        assert (ours.type, len(ours.shape)) == (theirs.type, len(theirs.shape))
    wav = speech_like(4.0, seed=1)
    codes = real.encode(wav, 16_000)
    assert len(codes.vq06) == 100 and abs(len(codes.vq02) - 4.0 * 50 / 3) <= 2
    stream = real.stream(Vq06Policy(mode="lookahead", lookahead_s=1.0, left_context_s=2.0, hop_s=0.48))
    prepared = real.prepare(wav, 16_000)
    for i in range(0, prepared.shape[0], 3840):
        stream.push(prepared[i : i + 3840])
    stream.finish()
    assert stream.codes().vq02 == codes.vq02
    print(f"real vq06 lookahead agreement: {code_agreement(stream.codes().vq06, codes.vq06):.3f}")
