from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from stepaudio.audio.features import kaldi_fbank
from stepaudio.decoder.speaker import CampPlusEmbedder, campplus_features
from stepaudio.errors import AudioError, CheckpointError, MissingExtraError
from stepaudio.testing.tiny_decoder import TinyXVector


def _export(tmp_path: Path) -> tuple[TinyXVector, Path]:
    torch.manual_seed(0)
    model = TinyXVector().eval()
    path = tmp_path / "campplus.onnx"
    torch.onnx.export(
        model, (torch.randn(1, 50, 80),), str(path),
        input_names=["x_fbank"], output_names=["embedding"],
        dynamic_axes={"x_fbank": {1: "frames"}}, dynamo=False,
    )  # fmt: skip
    return model, path


def _voice(seconds: float, seed: int = 0) -> torch.Tensor:
    t = torch.arange(int(16000 * seconds)) / 16000
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.sin(2 * torch.pi * 180 * t) + 0.01 * torch.randn(t.shape, generator=g)


def test_features_are_mean_normalised_kaldi_fbank() -> None:
    wav = _voice(0.5)
    feats = campplus_features(wav[None])
    expected = kaldi_fbank(wav, num_mel_bins=80, dither=0.0)
    assert feats.shape == (1, expected.shape[0], 80) and feats.dtype == torch.float32
    torch.testing.assert_close(feats[0], expected - expected.mean(dim=0, keepdim=True))
    torch.testing.assert_close(feats.mean(dim=1), torch.zeros(1, 80), atol=1e-4, rtol=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_embedding_equals_the_torch_model(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    model, path = _export(tmp_path)
    embedder = CampPlusEmbedder(path, intra_op_threads=1)
    assert embedder.input_name == "x_fbank"
    for seconds in (0.4, 1.3):  # two lengths: the time axis is dynamic
        wav = _voice(seconds, seed=int(seconds * 10))
        embedding = embedder.embed(wav)
        with torch.no_grad():
            expected = model(campplus_features(wav))[0]
        assert embedding.shape == (192,) and embedding.dtype == torch.float32
        torch.testing.assert_close(embedding, expected, atol=1e-4, rtol=1e-4)


def test_bad_audio_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="16000 Hz"):
        campplus_features(_voice(0.5), sample_rate=22050)
    with pytest.raises(AudioError, match="mono"):
        campplus_features(torch.zeros(2, 8000))
    with pytest.raises(AudioError, match="NaN"):
        campplus_features(torch.full((8000,), float("nan")))
    with pytest.raises(AudioError):
        campplus_features(torch.zeros(100))  # shorter than one 25 ms frame


def test_missing_model_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    with pytest.raises(CheckpointError, match="not found"):
        CampPlusEmbedder(tmp_path / "campplus.onnx")


def test_missing_onnxruntime_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(MissingExtraError) as err:
        CampPlusEmbedder(tmp_path / "campplus.onnx")
    assert err.value.extra == "step" and err.value.module == "onnxruntime"


def test_a_broken_campplus_file_names_the_file_to_download_again(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from stepaudio.errors import CheckpointError

    (tmp_path / "campplus.onnx").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match=r"not a loadable ONNX model \(.*\): re-download campplus.onnx"):
        CampPlusEmbedder(tmp_path / "campplus.onnx")
