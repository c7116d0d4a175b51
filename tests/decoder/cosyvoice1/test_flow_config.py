"""Flow config readers: conformance hparams.json and a HyperPyYAML-style cosyvoice.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepaudio.decoder.cosyvoice1.flow_config import (
    ConformerConfig,
    FlowConfig,
    cosyvoice_300m_config,
    flow_config_from_hparams,
    flow_config_from_yaml,
    read_tagged_yaml,
)
from stepaudio.errors import CheckpointError

# Same layout and tags as a CosyVoice-1 release yaml (values of the 300M model, trimmed).
COSYVOICE_YAML = """\
# set random seed, so that you may reproduce your result.
__set_seed1: !apply:random.seed [1986]
sample_rate: 22050
text_encoder_input_size: 512
spk_embed_dim: 192
hop: 256
flow: !new:cosyvoice.flow.flow.MaskedDiffWithXvec
    input_size: 512
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: 5120
    input_frame_rate: 41.667
    only_mask_loss: True
    encoder: !new:cosyvoice.transformer.encoder.ConformerEncoder
        output_size: 512
        attention_heads: 8
        linear_units: 2048
        num_blocks: 6
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        input_size: !ref <text_encoder_input_size>
        use_cnn_module: False
        macaron_style: False
    length_regulator: !new:cosyvoice.flow.length_regulator.InterpolateRegulator
        channels: 80
        sampling_ratios: [1, 1, 1, 1]
    decoder: !new:cosyvoice.flow.flow_matching.ConditionalCFM
        in_channels: 240
        n_spks: 1
        spk_emb_dim: 80
        cfm_params: !new:omegaconf.DictConfig
            content:
                sigma_min: 1e-06
                solver: 'euler'
                t_scheduler: 'cosine'
                training_cfg_rate: 0.2
                inference_cfg_rate: 0.7
                reg_loss_type: 'l1'
        estimator: !new:cosyvoice.flow.decoder.ConditionalDecoder
            in_channels: 320
            out_channels: 80
            channels: [256, 256]
            dropout: 0.0
            attention_head_dim: 64
            n_blocks: 4
            num_mid_blocks: 12
            num_heads: 8
            act_fn: 'gelu'
    mel_feat_conf:
        sampling_rate: !ref <sample_rate>
        hop_size: !ref <hop>
hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    sampling_rate: !ref <sample_rate>
    win: !ref <hop> * 4
    hop_copy: !copy <hop>
feat_extractor: !name:matcha.utils.audio.mel_spectrogram
    n_fft: 1024
"""


def test_yaml_reads_numbers_without_constructing_objects() -> None:
    cfg = flow_config_from_yaml(COSYVOICE_YAML)
    assert cfg.vocab_size == 5120
    assert cfg.input_frame_rate == pytest.approx(41.667)
    assert cfg.spk_embed_dim == 192
    assert cfg.encoder.input_size == 512 and cfg.encoder.num_blocks == 6
    assert cfg.length_regulator.sampling_ratios == (1, 1, 1, 1)
    assert cfg.cfm.sigma_min == pytest.approx(1e-6)
    assert cfg.cfm.inference_cfg_rate == pytest.approx(0.7)
    assert cfg.estimator.channels == (256, 256)
    assert cfg.estimator.num_mid_blocks == 12 and cfg.estimator.n_blocks == 4
    assert cfg == cosyvoice_300m_config(vocab_size=5120, input_frame_rate=41.667)


def test_yaml_ref_arithmetic_and_tags_become_plain_data() -> None:
    data = read_tagged_yaml(COSYVOICE_YAML)
    assert data["hift"]["win"] == 1024 and data["hift"]["hop_copy"] == 256
    assert data["__set_seed1"] == [1986]
    assert data["feat_extractor"] == {"n_fft": 1024}


def test_yaml_from_path(tmp_path: Path) -> None:
    path = tmp_path / "cosyvoice.yaml"
    path.write_text(COSYVOICE_YAML)
    assert flow_config_from_yaml(path).vocab_size == 5120


def test_yaml_without_flow_section_raises() -> None:
    with pytest.raises(CheckpointError, match="flow"):
        flow_config_from_yaml("a: 1\nb: !ref <a>\n")


def test_yaml_dangling_ref_raises() -> None:
    with pytest.raises(CheckpointError, match="nothing"):
        read_tagged_yaml("a: !ref <missing>\n")


def test_unsupported_encoder_variant_raises() -> None:
    with pytest.raises(CheckpointError, match="use_cnn_module"):
        ConformerConfig(use_cnn_module=True)


def test_mel_len_truncates_like_the_reference() -> None:
    cfg = FlowConfig(input_frame_rate=25.0)
    assert cfg.mel_len(10) == int(10 / 25 * 22050 / 256) == 34
    assert FlowConfig(input_frame_rate=41.667).mel_len(125) == int(125 / 41.667 * 22050 / 256)


def test_hparams_json_round_trip(tmp_path: Path) -> None:
    hparams = {
        "flow": {"input_size": 16, "output_size": 80, "spk_embed_dim": 192, "vocab_size": 32, "input_frame_rate": 25},
        "encoder": {"input_size": 16, "output_size": 16, "attention_heads": 2, "linear_units": 24, "num_blocks": 1},
        "length_regulator": {"channels": 80, "sampling_ratios": [1]},
        "cfm": {"in_channels": 240, "cfm_params": {"sigma_min": 1e-6, "inference_cfg_rate": 0.5}},
        "estimator": {"in_channels": 320, "out_channels": 80, "channels": [8, 8], "attention_head_dim": 4,
                      "n_blocks": 1, "num_mid_blocks": 1, "num_heads": 2, "act_fn": "gelu"},
    }
    path = tmp_path / "hparams.json"
    path.write_text(json.dumps(hparams))
    cfg = flow_config_from_hparams(path)
    assert cfg.vocab_size == 32 and cfg.encoder.linear_units == 24
    assert cfg.cfm.inference_cfg_rate == 0.5
    assert cfg.estimator.channels == (8, 8)
    del hparams["estimator"]
    path.write_text(json.dumps(hparams))
    with pytest.raises(CheckpointError, match="estimator"):
        flow_config_from_hparams(path)


@pytest.mark.conformance
def test_conformance_hparams(conformance_dir: Path) -> None:
    raw = json.loads((conformance_dir / "flow" / "hparams.json").read_text())
    cfg = flow_config_from_hparams(conformance_dir / "flow" / "hparams.json")
    assert cfg.vocab_size == raw["flow"]["vocab_size"]
    assert cfg.encoder.output_size == raw["encoder"]["output_size"]
    assert list(cfg.estimator.channels) == raw["estimator"]["channels"]
    assert cfg.cfm.t_scheduler == "cosine"
