"""Token2Wav offline and batched, loading a tiny CosyVoice folder in the real layout, prompt features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from stepaudio.audio.features import matcha_mel
from stepaudio.audio.io import resample
from stepaudio.decoder.cosyvoice1.flow_config import flow_config_from_hparams
from stepaudio.decoder.cosyvoice1.flow_loading import load_flow
from stepaudio.decoder.cosyvoice1.hift_config import HiFTConfig
from stepaudio.decoder.cosyvoice1.hift_fast import FastHiFT
from stepaudio.decoder.cosyvoice1.hift_loading import load_hift
from stepaudio.decoder.cosyvoice1.prompt_features import PromptFeatures
from stepaudio.decoder.cosyvoice1.stream_vocoder import vocode_span
from stepaudio.decoder.cosyvoice1.token2wav import Token2Wav
from stepaudio.decoder.cosyvoice1.token2wav_stream import window_mel
from stepaudio.decoder.frame_noise import FrameNoise, initial_phases
from stepaudio.decoder.speaker import CampPlusEmbedder
from stepaudio.errors import CheckpointError
from stepaudio.testing.tiny_decoder import write_tiny_cosyvoice_dir

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    return write_tiny_cosyvoice_dir(tmp_path_factory.mktemp("cosyvoice") / "CosyVoice-300M-25Hz")


@pytest.fixture(scope="module")
def t2w(tiny_dir: Path) -> Token2Wav:
    torch.set_num_threads(1)
    return Token2Wav.from_dir(tiny_dir)


def _prompt(n_tokens: int, frames: int, seed: int) -> PromptFeatures:
    g = torch.Generator().manual_seed(seed)
    mel = torch.randn(frames, 80, generator=g) - 4.0
    return PromptFeatures(torch.randint(0, 5120, (n_tokens,), generator=g), mel, torch.randn(192, generator=g))


def _tokens(n: int, seed: int) -> list[int]:
    return torch.randint(0, 5120, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_loads_the_release_layout(tiny_dir: Path, t2w: Token2Wav) -> None:
    assert sorted(p.name for p in tiny_dir.iterdir()) == ["campplus.onnx", "cosyvoice.yaml", "flow.pt", "hift.pt"]
    state = torch.load(tiny_dir / "flow.pt", weights_only=True)
    prefix = "decoder.estimator.mid_blocks.0.1.0.attn1."
    fused = torch.cat([state[prefix + f"to_{n}.weight"] for n in "qkv"])
    assert torch.equal(t2w.flow.state_dict()[prefix + "to_qkv.weight"], fused)
    assert "conv_pre.weight_g" in torch.load(tiny_dir / "hift.pt", weights_only=True)
    assert isinstance(t2w.hift, FastHiFT) and isinstance(t2w.speaker, CampPlusEmbedder)
    assert t2w.sample_rate == 22050 and t2w.flow.config.vocab_size == 5120
    assert t2w.flow.config.input_frame_rate == pytest.approx(41.667)


def test_offline_is_seeded_and_has_the_reference_length(t2w: Token2Wav) -> None:
    prompt, tokens = _prompt(10, 21, 1), _tokens(30, 2)
    wav = t2w.offline(tokens, prompt, seed=5)
    assert wav.dtype == np.float32 and wav.shape == (t2w.flow.config.mel_len(30) * 256,)
    assert np.isfinite(wav).all() and 0 < np.abs(wav).max() < 0.99
    assert np.array_equal(wav, t2w.offline(tokens, prompt, seed=5))
    assert np.abs(wav - t2w.offline(tokens, prompt, seed=6)).max() > 1e-4


def test_batch_with_different_lengths_equals_single_runs(t2w: Token2Wav) -> None:
    voice_a, voice_b = _prompt(10, 21, 4), _prompt(6, 12, 6)
    items = [(_tokens(30, 3), voice_a), (_tokens(13, 5), voice_b), (_tokens(22, 7), voice_a)]
    batch = t2w.offline_batch(items, seed=11)
    for (tokens, prompt), wav in zip(items, batch, strict=True):
        alone = t2w.offline(tokens, prompt, seed=11)
        assert wav.shape == alone.shape == (t2w.flow.config.mel_len(len(tokens)) * 256,)
        np.testing.assert_allclose(wav, alone, atol=2e-4, rtol=0)


def test_fast_and_plain_vocoders_agree(tiny_dir: Path, t2w: Token2Wav) -> None:
    plain = Token2Wav.from_dir(tiny_dir, fast_hift=False, speaker=t2w.speaker)
    prompt, tokens = _prompt(8, 17, 8), _tokens(20, 9)
    np.testing.assert_allclose(plain.offline(tokens, prompt, seed=1), t2w.offline(tokens, prompt, seed=1), atol=1e-4)


def test_prompt_features_follow_the_reference_frontend(t2w: Token2Wav) -> None:
    rate = 24000
    t = np.arange(int(1.2 * rate)) / rate
    wav = (0.4 * np.sin(2 * np.pi * 210 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    features = t2w.prompt_features(wav, rate, [5, 70, 5119])
    expected_mel = matcha_mel(torch.from_numpy(resample(wav, rate, 22050))).T
    torch.testing.assert_close(features.mel, expected_mel)
    assert t2w.speaker is not None
    expected_xvec = t2w.speaker.embed(torch.from_numpy(resample(wav, rate, 16000)))
    torch.testing.assert_close(features.embedding, expected_xvec)
    assert features.flow_tokens.dtype == torch.int64 and features.flow_tokens.tolist() == [5, 70, 5119]
    assert features.mel.shape[1] == 80 and features.embedding.shape == (192,)


def test_bad_inputs_are_rejected(tmp_path: Path, t2w: Token2Wav) -> None:
    prompt = _prompt(4, 9, 10)
    with pytest.raises(ValueError, match="vocabulary"):
        t2w.offline([5120], prompt)
    with pytest.raises(ValueError, match="too few"):
        t2w.offline([], prompt)
    with pytest.raises(CheckpointError, match="no cosyvoice"):
        Token2Wav.from_dir(tmp_path)
    with pytest.raises(ValueError, match="both"):
        PromptFeatures(torch.zeros(0, dtype=torch.long), torch.zeros(5, 80), torch.zeros(192))


def test_frame_noise_slices_are_position_addressed() -> None:
    noise = FrameNoise(seed=3, stream=1, channels=4, block=16)
    whole = noise.columns(0, 100)
    assert torch.equal(FrameNoise(3, 1, 4, 16).columns(37, 81), whole[:, 37:81])
    assert not torch.equal(FrameNoise(4, 1, 4, 16).columns(0, 100), whole)
    assert not torch.equal(FrameNoise(3, 2, 4, 16).columns(0, 100), whole)
    phases = initial_phases(3, 9)
    assert phases.shape == (1, 9, 1) and phases[0, 0, 0] == 0 and bool((phases.abs() <= np.pi).all())


@pytest.mark.conformance
def test_flow_window_reproduces_the_reference_mel(conformance_dir: Path) -> None:
    flow_dir = conformance_dir / "flow"
    model = load_flow(flow_dir / "flow.safetensors", flow_config_from_hparams(flow_dir / "hparams.json"))
    v = load_file(str(flow_dir / "vectors.safetensors"))
    prompt = PromptFeatures(v["inputs.prompt_token"][0], v["inputs.prompt_feat"][0], v["inputs.embedding"][0])
    tokens = v["inputs.token"][0]
    frames = model.config.mel_len(int(tokens.numel()))
    mel = window_mel(model, prompt, tokens, frames, v["inputs.noise"][0])
    torch.testing.assert_close(mel, v["outputs.mel"][0], atol=5e-4, rtol=0)


class _SavedNoise(FrameNoise):
    def __init__(self, noise: torch.Tensor) -> None:
        super().__init__(0, 0, noise.shape[0])
        self.saved = noise

    def columns(self, start: int, stop: int) -> torch.Tensor:
        return self.saved[:, start:stop]


@pytest.mark.conformance
def test_vocoder_span_reproduces_the_reference_waveform(conformance_dir: Path) -> None:
    hift_dir = conformance_dir / "hift"
    hparams = json.loads((hift_dir / "hparams.json").read_text())
    model = load_hift(hift_dir / "hift.safetensors", HiFTConfig.from_dict(hparams))
    v = load_file(str(hift_dir / "vectors.safetensors"))
    wav, f0 = vocode_span(model, v["inputs.mel"], 0, v["inputs.sine_phase"], _SavedNoise(v["inputs.sine_noise"][0]))
    torch.testing.assert_close(f0, v["outputs.f0"], atol=2e-3, rtol=1e-4)
    torch.testing.assert_close(wav, v["outputs.waveform"][0], atol=2e-3, rtol=0)


def test_preferred_flow_dtype_follows_the_measured_choice(tmp_path: Path) -> None:
    from stepaudio.decoder.cosyvoice1.token2wav import FLOW_DTYPE_QUESTION, preferred_flow_dtype
    from stepaudio.kernels.choices import ChoiceCache, Measured

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STEPAUDIO_CACHE", str(tmp_path))
        patch.delenv("STEPAUDIO_REMEASURE", raising=False)
        cache = ChoiceCache()
        for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            cache.put(FLOW_DTYPE_QUESTION, Measured(name, {"step": {name: 1.0}}))
            assert preferred_flow_dtype("cpu") == dtype
        assert preferred_flow_dtype("cuda") == torch.bfloat16
        assert preferred_flow_dtype("mps") == torch.float32


@pytest.mark.slow
def test_measure_flow_dtypes_times_both_candidates_and_keeps_the_global_generator() -> None:
    from stepaudio.decoder.cosyvoice1.token2wav import FLOW_CANDIDATES, measure_flow_dtypes

    state = torch.get_rng_state()
    measured = measure_flow_dtypes()
    assert torch.equal(torch.get_rng_state(), state)
    assert set(measured.timings["step"]) == set(FLOW_CANDIDATES) and measured.choice in FLOW_CANDIDATES
