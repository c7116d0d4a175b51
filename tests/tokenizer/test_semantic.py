"""vq06 SemanticTokenizer: the exported S3-shaped graph, 30 s windowing, the reference log-mel, typed errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file

from stepaudio.errors import AudioError, CheckpointError, MissingExtraError
from stepaudio.tokenizer.s3_model import INPUT_NAMES, S3Config, code_count, export_s3_onnx, random_s3
from stepaudio.tokenizer.semantic import (
    MIN_WINDOW_SAMPLES,
    WINDOW_SAMPLES,
    SemanticTokenizer,
    default_providers,
    window_bounds,
)

TINY = S3Config(n_state=32, n_head=4, n_layer=2, codebook_size=4096)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny ops: one thread is faster


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_s3_onnx(tmp_path_factory.mktemp("s3") / "speech_tokenizer_v1.onnx", TINY, seed=3)


class _RecordingSession:
    """Stands in for onnxruntime: records what it is fed, returns one code per 640 samples."""

    def __init__(self) -> None:
        self.calls: list[dict[str, np.ndarray]] = []

    def run(self, outputs: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.calls.append(feeds)
        frames = int(feeds["feats_length"][0])
        return [np.arange(code_count(frames), dtype=np.int64)[None, None] % 4096]


def _fake() -> tuple[SemanticTokenizer, _RecordingSession]:
    session = _RecordingSession()
    return SemanticTokenizer(session=session, feats_name="feats", length_name="feats_length"), session


def test_exported_graph_has_the_real_signature_and_matches_torch(tiny_onnx: Path) -> None:
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    assert [i.name for i in inputs] == list(INPUT_NAMES)
    assert inputs[0].type == "tensor(float)" and inputs[1].type == "tensor(int32)"
    assert inputs[0].shape[1] == 128
    model = random_s3(TINY, seed=3)
    gen = torch.Generator().manual_seed(0)
    for frames in (3, 97, 400, 3000):
        mel = torch.randn(1, 128, frames, generator=gen)
        got = session.run(None, {"feats": mel.numpy(), "feats_length": np.array([frames], np.int32)})[0]
        assert got.shape == (1, 1, code_count(frames)) and got.dtype == np.int64
        with torch.no_grad():
            want = model(mel, torch.tensor([frames], dtype=torch.int32))
        assert np.array_equal(got, want.numpy())
    assert code_count(3000) == 750  # 30 s -> 750 codes (25 Hz)


def test_lengths_mask_padded_frames() -> None:
    model = random_s3(TINY, seed=1)
    gen = torch.Generator().manual_seed(1)
    mel = torch.randn(1, 128, 101, generator=gen)
    padded = torch.cat([mel, 5 * torch.randn(1, 128, 40, generator=gen)], dim=-1)
    with torch.no_grad():
        alone = model(mel, torch.tensor([101]))
        masked = model(padded, torch.tensor([101]))
    assert torch.equal(masked[..., : alone.shape[-1]], alone)


def test_window_bounds_follow_the_reference() -> None:
    assert window_bounds(0) == []
    assert window_bounds(MIN_WINDOW_SAMPLES - 1) == []
    assert window_bounds(MIN_WINDOW_SAMPLES) == [(0, MIN_WINDOW_SAMPLES)]
    w = WINDOW_SAMPLES
    assert window_bounds(2 * w + 479) == [(0, w), (w, 2 * w)]
    assert window_bounds(2 * w + 480) == [(0, w), (w, 2 * w), (2 * w, 2 * w + 480)]


def test_windows_are_fed_as_whisper_mel_with_their_length() -> None:
    tok, session = _fake()
    n = WINDOW_SAMPLES + 16_000 + 37
    wav = (0.1 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)
    codes = tok.encode(wav)
    assert len(session.calls) == 2
    for call, frames in zip(session.calls, (3000, (16_000 + 37) // 160), strict=True):
        feats = call["feats"]
        assert feats.shape == (1, 128, frames) and feats.dtype == np.float32
        assert call["feats_length"].dtype == np.int32 and call["feats_length"].tolist() == [frames]
    assert len(codes) == 750 + code_count((16_000 + 37) // 160)
    assert tok.encode(wav[: MIN_WINDOW_SAMPLES - 1]) == []


@pytest.mark.conformance
def test_fed_features_match_reference_whisper_mel(conformance_dir: Path) -> None:
    feats = load_file(conformance_dir / "features" / "features.safetensors")
    want = load_file(conformance_dir / "features" / "whisper_mel.safetensors")["whisper_log_mel_128"]
    tok, session = _fake()
    tok.encode(feats["wav_16000"][0].numpy())
    fed = torch.from_numpy(session.calls[0]["feats"][0])
    assert fed.shape == want.shape
    torch.testing.assert_close(fed, want, atol=1e-2, rtol=0)


def test_encode_through_onnxruntime(tiny_onnx: Path) -> None:
    tok = SemanticTokenizer.from_onnx(tiny_onnx, providers=["CPUExecutionProvider"], intra_op_threads=1)
    assert tok.providers == ["CPUExecutionProvider"]
    n = 16_000 * 2 + 300
    t = np.arange(n) / 16_000
    wav = (0.5 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.random.default_rng(1).standard_normal(n)).astype(np.float32)
    codes = tok.encode(wav)
    assert len(codes) == code_count(n // 160) == 51
    assert all(0 <= c < 4096 for c in codes) and len(set(codes)) > 1
    assert tok.encode(torch.from_numpy(wav)[None]) == codes  # [1, N] torch input


def test_idle_workers_do_not_spin_unless_asked(tiny_onnx: Path) -> None:
    """Spinning onnxruntime workers would take a core from the vq02 step that follows a vq06 window."""
    def spinning(tok: SemanticTokenizer) -> str:
        return str(tok.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning"))

    assert spinning(SemanticTokenizer.from_onnx(tiny_onnx, providers=["CPUExecutionProvider"])) == "0"
    assert spinning(SemanticTokenizer.from_onnx(tiny_onnx, providers=["CPUExecutionProvider"], spin=True)) == "1"


def test_bad_audio_is_an_audio_error() -> None:
    tok, _ = _fake()
    with pytest.raises(AudioError, match="mono"):
        tok.encode(np.zeros((2, 4000), np.float32))
    with pytest.raises(AudioError, match="NaN"):
        tok.encode(np.full(4000, np.nan, np.float32))
    with pytest.raises(AudioError, match="float"):
        tok.encode(np.zeros(4000, np.int16))
    with pytest.raises(AudioError, match="at most"):
        tok.encode_window(np.zeros(WINDOW_SAMPLES + 1, np.float32))


def test_bad_model_files_are_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        SemanticTokenizer.from_onnx(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all")
    with pytest.raises(CheckpointError, match="not a loadable ONNX"):
        SemanticTokenizer.from_onnx(garbage)
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    one_input = tmp_path / "one_input.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), one_input)
    with pytest.raises(CheckpointError, match="expected inputs"):
        SemanticTokenizer.from_onnx(one_input)


def test_missing_onnxruntime_names_the_extra(monkeypatch: pytest.MonkeyPatch, tiny_onnx: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtraError) as info:
        SemanticTokenizer.from_onnx(tiny_onnx)
    assert info.value.extra == "step" and info.value.module == "onnxruntime"


def test_cuda_is_preferred_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_providers()[-1] == "CPUExecutionProvider"
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider", "CUDAExecutionProvider"])
    assert default_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
