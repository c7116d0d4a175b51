"""Paraformer-online frontend, encoder and loading: reference vectors plus small random models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from stepaudio.audio.features import kaldi_fbank
from stepaudio.errors import CheckpointError
from stepaudio.tokenizer.paraformer.encoder import ChunkConfig, ParaformerEncoder, ParaformerEncoderConfig
from stepaudio.tokenizer.paraformer.frontend import Cmvn, FrontendConfig, OnlineFrontend, load_cmvn, parse_cmvn
from stepaudio.tokenizer.paraformer.loading import (
    encoder_key_map,
    load_encoder,
    load_encoder_state,
    load_paraformer_config,
    parse_paraformer_config,
)

STEP = 3840


def _reference_pieces(wav: torch.Tensor, step: int = STEP) -> list[tuple[torch.Tensor, bool]]:
    """The reference loop: full pieces, then one final iteration (skipped when nothing is left)."""
    count = wav.shape[0] // step + 1
    pieces = []
    for i in range(count):
        piece = wav[i * step : (i + 1) * step]
        if i == count - 1 and piece.numel() == 0:
            break
        pieces.append((piece, i == count - 1))
    return pieces


@pytest.fixture(scope="module")
def para(conformance_dir: Path) -> dict:
    d = conformance_dir / "paraformer"
    meta = json.loads((d / "meta.json").read_text())
    encoder_config, frontend_config = parse_paraformer_config(
        {"encoder_conf": meta["encoder"], "frontend_conf": meta["frontend"]}
    )
    kwargs = meta["infer_kwargs"]
    return {
        "dir": d,
        "meta": meta,
        "vectors": load_file(d / "vectors.safetensors"),
        "encoder_config": encoder_config,
        "frontend": OnlineFrontend(frontend_config, load_cmvn(d / meta["cmvn_file"])),
        "chunk": ChunkConfig(tuple(kwargs["chunk_size"]), kwargs["encoder_chunk_look_back"]),
        "step": meta["chunk_stride_samples"],
    }


def _run_frontend(frontend: OnlineFrontend, wav: torch.Tensor, step: int = STEP) -> list[torch.Tensor]:
    state = frontend.new_state()
    return [frontend(state, piece, final) for piece, final in _reference_pieces(wav, step)]


@pytest.mark.conformance
def test_frontend_matches_reference(para: dict) -> None:
    wav = para["vectors"]["inputs.wav_16000"][0]
    assert para["step"] == para["chunk"].chunk_size[1] * 960
    feats = _run_frontend(para["frontend"], wav, para["step"])
    assert [f.shape[0] for f in feats] == para["meta"]["frontend_frames_per_chunk"]
    torch.testing.assert_close(torch.cat(feats), para["vectors"]["outputs.frontend_feats"], atol=1e-3, rtol=0)


@pytest.mark.conformance
def test_encoder_chunks_match_reference(para: dict) -> None:
    v, chunk = para["vectors"], para["chunk"]
    encoder = load_encoder(para["encoder_config"], load_encoder_state(para["dir"] / "encoder.safetensors"))
    cache = encoder.new_cache(chunk)
    outs = []
    with torch.inference_mode():
        for i, feats in enumerate(_run_frontend(para["frontend"], v["inputs.wav_16000"][0], para["step"])):
            raw, cache = encoder.forward_chunk(feats[None], cache, chunk)
            want = v[f"outputs.encoder_chunk{i}_raw_out"]
            assert raw.shape == want.shape
            torch.testing.assert_close(raw, want, atol=1e-4, rtol=0)
            outs.append(raw[:, -feats.shape[0] :])
    assert len(outs) == para["meta"]["n_chunks_frontend_called"]
    torch.testing.assert_close(torch.cat(outs, dim=1), v["outputs.enc_out"], atol=1e-4, rtol=0)


def _offline_features(wav: torch.Tensor, cfg: FrontendConfig, cmvn: Cmvn) -> torch.Tensor:
    """Independent whole-utterance formulation: fbank, 3 left copies, stack 7 every 6, pad right."""
    fbank = kaldi_fbank(wav * 32768, window_type="hamming", energy_floor=0.0, dither=0.0)
    left = (cfg.lfr_m - 1) // 2
    frames = torch.cat([fbank[:1].repeat(left, 1), fbank])
    count = math.ceil(fbank.shape[0] / cfg.lfr_n)
    padded = torch.cat([frames, fbank[-1:].repeat(cfg.lfr_m, 1)])
    stacked = torch.stack([padded[i * cfg.lfr_n : i * cfg.lfr_n + cfg.lfr_m].reshape(-1) for i in range(count)])
    return cmvn.apply(stacked)


@pytest.mark.parametrize("n_samples", [9000, 20800, 30000])
def test_streaming_frontend_equals_whole_utterance(n_samples: int) -> None:
    cfg = FrontendConfig(dither=0.0)
    gen = torch.Generator().manual_seed(n_samples)
    cmvn = Cmvn(shift=torch.randn(560, generator=gen), scale=torch.rand(560, generator=gen) + 0.5)
    wav = torch.randn(n_samples, generator=gen) * 0.1
    streamed = torch.cat(_run_frontend(OnlineFrontend(cfg, cmvn), wav))
    torch.testing.assert_close(streamed, _offline_features(wav, cfg, cmvn), atol=1e-3, rtol=1e-5)


def test_frontend_quirks_drop_short_tails() -> None:
    frontend = OnlineFrontend(FrontendConfig(dither=0.0), None)
    wav = torch.randn(2 * STEP) * 0.1
    # an exact multiple of the step never gets a final call: the splice cache is not flushed
    feats = _run_frontend(frontend, wav)
    assert [f.shape[0] for f in feats] == [4, 4]
    # fewer than 4 fbank frames in the whole utterance give nothing
    assert _run_frontend(frontend, wav[:800])[0].shape[0] == 0
    assert _run_frontend(frontend, wav[:880])[0].shape[0] == 1


def test_parse_cmvn_and_errors(tmp_path: Path) -> None:
    text = (
        "<Nnet>\n<Splice> 3 3\n[ 0 ]\n<AddShift> 3 3\n<LearnRateCoef> 0 [ -1 -2 -3.5 ]\n"
        "<Rescale> 3 3\n<LearnRateCoef> 0 [ 0.5 2 1 ]\n</Nnet>\n"
    )
    cmvn = parse_cmvn(text)
    out = cmvn.apply(torch.ones(2, 3))
    torch.testing.assert_close(out, torch.tensor([[0.0, -2.0, -2.5]] * 2))
    with pytest.raises(CheckpointError, match="Rescale"):
        parse_cmvn(text.split("<Rescale>")[0])
    with pytest.raises(CheckpointError, match="features have 4"):
        cmvn.apply(torch.ones(1, 4))
    with pytest.raises(CheckpointError, match="not found"):
        load_cmvn(tmp_path / "missing.mvn")


def _tiny_config() -> ParaformerEncoderConfig:
    return ParaformerEncoderConfig(input_size=20, output_size=16, attention_heads=2, linear_units=24, num_blocks=3)


def test_key_map_covers_the_model_and_loads_model_pt(tmp_path: Path) -> None:
    config = _tiny_config()
    torch.manual_seed(0)
    source = ParaformerEncoder(config)
    mapping = encoder_key_map(config)
    assert set(mapping) == set(source.state_dict())
    state = {mapping[k]: v for k, v in source.state_dict().items()}
    state["decoder.decoders.0.weight"] = torch.zeros(3)  # non-encoder keys of the ASR model are ignored
    state["predictor.cif_output.bias"] = torch.zeros(1)
    torch.save(state, tmp_path / "model.pt")
    save_file({k: v for k, v in state.items() if k.startswith("encoder.")}, tmp_path / "enc.safetensors")
    for name in ("model.pt", "enc.safetensors"):
        loaded = load_encoder(config, load_encoder_state(tmp_path / name))
        for key, value in source.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key


def test_checkpoint_errors_name_key_and_shapes(tmp_path: Path) -> None:
    config = _tiny_config()
    mapping = encoder_key_map(config)
    state = {mapping[k]: t for k, t in ParaformerEncoder(config).state_dict().items()}
    bad = dict(state)
    bad["encoder.encoders.0.feed_forward.w_1.weight"] = torch.zeros(25, 16)
    with pytest.raises(CheckpointError, match=r"encoders\.0\.feed_forward\.w_1\.weight.*\(25, 16\).*\(24, 16\)"):
        load_encoder(config, bad)
    missing = dict(state)
    del missing["encoder.after_norm.bias"]
    with pytest.raises(CheckpointError, match=r"after_norm\.bias"):
        load_encoder(config, missing)
    extra = dict(state)
    extra["encoder.encoders.2.norm1.weight"] = torch.ones(16)
    with pytest.raises(CheckpointError, match=r"encoders\.2\.norm1\.weight.*num_blocks=3"):
        load_encoder(config, extra)
    (tmp_path / "model.pt").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match=r"model\.pt"):
        load_encoder_state(tmp_path / "model.pt")


def test_config_yaml_reads_plain_numbers_and_ignores_tags(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "encoder: SANMEncoderChunkOpt\n"
        "encoder_conf:\n  output_size: 512\n  attention_heads: 4\n  linear_units: 2048\n  num_blocks: 50\n"
        "  input_layer: pe_online\n  pos_enc_class: !!python/name:builtins.print\n  kernel_size: 11\n"
        "frontend: WavFrontendOnline\n"
        "frontend_conf:\n  fs: 16000\n  window: hamming\n  n_mels: 80\n  frame_length: 25\n"
        "  frame_shift: 10\n  lfr_m: 7\n  lfr_n: 6\n  dither: 0.0\n"
    )
    encoder, frontend = load_paraformer_config(path)
    assert (encoder.input_size, encoder.output_size, encoder.num_blocks) == (560, 512, 50)
    assert frontend.dither == 0.0 and frontend.lfr_n == 6 and frontend.window == "hamming"
    assert parse_paraformer_config({"encoder_conf": {"output_size": 8, "attention_heads": 2}})[1].dither == 1.0
    with pytest.raises(CheckpointError, match="input_layer"):
        parse_paraformer_config({"encoder_conf": {"input_layer": "conv2d"}})


def test_encoder_cache_keeps_look_back_positions_and_first_layer_has_no_residual() -> None:
    config = _tiny_config()
    torch.manual_seed(1)
    encoder = ParaformerEncoder(config).eval()
    chunk = ChunkConfig((0, 4, 5), 4)
    cache = encoder.new_cache(chunk)
    with torch.inference_mode():
        for step in range(6):
            out, cache = encoder.forward_chunk(torch.randn(1, 4, 20), cache, chunk)
            assert out.shape == (1, 9, 16)
            assert cache.start_idx == 4 * (step + 1)
            assert all(k.shape[2] == min(16, 4 * (step + 1)) for k, _ in cache.kv)
            assert len(cache.kv) == config.num_blocks and cache.overlap.shape == (1, 5, 20)
    assert not encoder.encoders0[0].residual_attention and encoder.encoders[0].residual_attention
