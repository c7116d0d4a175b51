"""vq02 LinguisticTokenizer: reference codes, streaming equals offline, loading a release-like folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from stepaudio.errors import AudioError, CheckpointError
from stepaudio.tokenizer.linguistic import PARAFORMER_SUBDIR, LinguisticTokenizer, nearest_centroid
from stepaudio.tokenizer.paraformer.encoder import ChunkConfig, ParaformerEncoder, ParaformerEncoderConfig
from stepaudio.tokenizer.paraformer.frontend import Cmvn, FrontendConfig, OnlineFrontend, load_cmvn
from stepaudio.tokenizer.paraformer.loading import (
    encoder_key_map,
    load_encoder,
    load_encoder_state,
    parse_paraformer_config,
)


@pytest.mark.conformance
def test_quantization_matches_reference_indices(conformance_dir: Path) -> None:
    d = conformance_dir / "paraformer"
    vectors = load_file(d / "vectors.safetensors")
    codebook = torch.from_numpy(np.load(d / "linguistic_tokenizer.npy"))
    assert codebook.shape == (1024, 512)
    indices = nearest_centroid(vectors["quant.features"], codebook)
    assert indices.tolist() == vectors["quant.indices"].tolist()
    assert indices.tolist() == json.loads((d / "meta.json").read_text())["quant_indices"]


@pytest.mark.conformance
def test_tokenizer_features_match_reference_enc_out(conformance_dir: Path) -> None:
    d = conformance_dir / "paraformer"
    meta = json.loads((d / "meta.json").read_text())
    vectors = load_file(d / "vectors.safetensors")
    encoder_config, frontend_config = parse_paraformer_config(
        {"encoder_conf": meta["encoder"], "frontend_conf": meta["frontend"]}
    )
    encoder = load_encoder(encoder_config, load_encoder_state(d / "encoder.safetensors"))
    codebook = torch.randn(64, encoder_config.output_size, generator=torch.Generator().manual_seed(0))
    kwargs = meta["infer_kwargs"]
    chunk = ChunkConfig(tuple(kwargs["chunk_size"]), kwargs["encoder_chunk_look_back"])
    frontend = OnlineFrontend(frontend_config, load_cmvn(d / meta["cmvn_file"]))
    tok = LinguisticTokenizer(frontend, encoder, codebook, chunk=chunk)
    assert tok.samples_per_step == meta["chunk_stride_samples"]
    wav = vectors["inputs.wav_16000"]
    features = tok.encode_features(wav)
    want = vectors["outputs.enc_out"][0]
    assert features.shape[0] == meta["enc_out_frames"]
    torch.testing.assert_close(features, want, atol=1e-4, rtol=0)
    assert tok.encode(wav) == nearest_centroid(want, codebook).tolist()


def _tiny_tokenizer(seed: int = 0) -> LinguisticTokenizer:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    config = ParaformerEncoderConfig(input_size=560, output_size=16, attention_heads=2, linear_units=32, num_blocks=3)
    cmvn = Cmvn(shift=-torch.rand(560, generator=gen) * 10 - 5, scale=torch.rand(560, generator=gen) * 0.2 + 0.1)
    frontend = OnlineFrontend(FrontendConfig(dither=0.0), cmvn)
    codebook = torch.randn(32, 16, generator=gen)
    return LinguisticTokenizer(frontend, ParaformerEncoder(config).eval(), codebook)


def _speechlike(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    tone = torch.sin(2 * torch.pi * (150 + 600 * t) * t) * (0.5 + 0.5 * torch.sin(2 * torch.pi * 3 * t))
    return (0.4 * tone + 0.05 * torch.randn(n, generator=gen)).float()


@pytest.mark.parametrize("n_samples", [37_000, 3840 * 7, 1000])
def test_streamed_codes_equal_offline_codes(n_samples: int) -> None:
    tok = _tiny_tokenizer()
    wav = _speechlike(n_samples, seed=n_samples)
    offline = tok.encode(wav)
    features = tok.encode_features(wav)
    assert len(offline) == features.shape[0]
    rng = np.random.default_rng(n_samples)
    for _ in range(3):
        stream = tok.stream()
        codes: list[int] = []
        streamed_features = []
        start = 0
        while start < n_samples:
            size = int(rng.integers(0, 6000))
            piece = wav[start : start + size]
            streamed_features.append(stream.push_features(piece.numpy()))
            start += size
        streamed_features.append(stream.finish_features())
        codes = tok.quantize(torch.cat(streamed_features))
        assert codes == offline
        # offline batches the steps per layer: the same arithmetic, other float rounding
        torch.testing.assert_close(torch.cat(streamed_features), features, atol=1e-5, rtol=0)
        whole = tok.stream()
        sequential = torch.cat([whole.push_features(wav), whole.finish_features()])
        torch.testing.assert_close(torch.cat(streamed_features), sequential, atol=0, rtol=0)


def test_codes_are_released_per_240ms_step() -> None:
    tok = _tiny_tokenizer()
    wav = _speechlike(3840 * 3 + 1000, seed=1)
    stream = tok.stream()
    assert stream.push(wav[:3839]) == []
    assert len(stream.push(wav[3839:3840])) == 4  # a full 240 ms step is final at once
    assert len(stream.push(wav[3840 : 3 * 3840])) == 8
    assert stream.push(wav[3 * 3840 :]) == []
    tail = stream.finish()
    assert len(tail) == 1  # 1000 + 320 cached samples: 7 fbank frames, one padded LFR frame
    with pytest.raises(AudioError, match="finished"):
        stream.push(wav[:10])


def test_bad_audio_is_rejected() -> None:
    tok = _tiny_tokenizer()
    with pytest.raises(AudioError, match="mono"):
        tok.encode(torch.zeros(2, 4000))
    with pytest.raises(AudioError, match="NaN"):
        tok.encode(torch.full((4000,), float("nan")))
    with pytest.raises(AudioError, match="float"):
        tok.encode(np.zeros(4000, dtype=np.int16))
    assert tok.encode(torch.zeros(0)) == []


def test_nearest_centroid_agrees_with_cdist() -> None:
    gen = torch.Generator().manual_seed(3)
    x, c = torch.randn(200, 24, generator=gen), torch.randn(50, 24, generator=gen)
    assert torch.equal(nearest_centroid(x, c), torch.cdist(x.double(), c.double()).argmin(1))


def _write_release(root: Path, tok: LinguisticTokenizer) -> None:
    model_dir = root / PARAFORMER_SUBDIR
    model_dir.mkdir(parents=True)
    enc = tok.encoder.config
    (model_dir / "config.yaml").write_text(
        "encoder: SANMEncoderChunkOpt\n"
        f"encoder_conf:\n  output_size: {enc.output_size}\n  attention_heads: {enc.attention_heads}\n"
        f"  linear_units: {enc.linear_units}\n  num_blocks: {enc.num_blocks}\n  input_layer: pe_online\n"
        "  kernel_size: 11\n  sanm_shfit: 0\n  normalize_before: true\n"
        "frontend: WavFrontendOnline\nfrontend_conf:\n  fs: 16000\n  window: hamming\n  n_mels: 80\n"
        "  frame_length: 25\n  frame_shift: 10\n  lfr_m: 7\n  lfr_n: 6\n  dither: 0.0\n"
    )
    cmvn = tok.frontend.cmvn
    assert cmvn is not None
    shift = " ".join(repr(float(v)) for v in cmvn.shift)
    scale = " ".join(repr(float(v)) for v in cmvn.scale)
    (model_dir / "am.mvn").write_text(
        f"<Nnet>\n<Splice> 560 560\n[ 0 ]\n<AddShift> 560 560\n<LearnRateCoef> 0 [ {shift} ]\n"
        f"<Rescale> 560 560\n<LearnRateCoef> 0 [ {scale} ]\n</Nnet>\n"
    )
    mapping = encoder_key_map(enc)
    state = {mapping[k]: v for k, v in tok.encoder.state_dict().items()}
    state["ctc.ctc_lo.weight"] = torch.zeros(4, 4)
    torch.save(state, model_dir / "model.pt")
    np.save(root / "linguistic_tokenizer.npy", tok.codebook.numpy())


def test_from_pretrained_release_layout(tmp_path: Path) -> None:
    tok = _tiny_tokenizer(seed=5)
    _write_release(tmp_path, tok)
    loaded = LinguisticTokenizer.from_pretrained(tmp_path)
    wav = _speechlike(20_000, seed=9)
    assert loaded.encode(wav) == tok.encode(wav)
    assert loaded.frontend.config.dither == 0.0
    packed = LinguisticTokenizer.from_pretrained(tmp_path, weight_mode="fp32-packed")
    assert packed.encode(wav) == tok.encode(wav)
    (tmp_path / "linguistic_tokenizer.npy").unlink()
    with pytest.raises(CheckpointError, match="codebook"):
        LinguisticTokenizer.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="codebook shape"):
        LinguisticTokenizer(tok.frontend, tok.encoder, torch.zeros(8, 7))
