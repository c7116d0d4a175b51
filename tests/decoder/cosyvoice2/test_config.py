from __future__ import annotations

from pathlib import Path

import pytest

from stepaudio.decoder.cosyvoice2.config import (
    DiTConfig,
    EncoderConfig,
    FlowConfig,
    flow_config_from_yaml,
    hift24k_config,
)
from stepaudio.errors import CheckpointError


def test_conformance_yaml_gives_the_tiny_sizes(t2w_dir: Path) -> None:
    text = (t2w_dir / "flow.yaml").read_text()
    config = flow_config_from_yaml(text)
    assert config == flow_config_from_yaml(t2w_dir / "flow.yaml")
    assert config.vocab_size == 6561 and config.output_size == 80 and config.spk_embed_dim == 192
    enc = config.encoder
    assert (enc.num_blocks, enc.num_up_blocks, enc.attention_heads, enc.pre_lookahead_len) == (2, 2, 4, 3)
    assert enc.output_size == config.input_size and config.up_rate == 2
    est = config.estimator
    assert (est.depth, est.num_heads, est.head_dim, est.hidden_size, est.in_channels) == (2, 4, 16, 64, 320)
    assert config.cfm.inference_cfg_rate == pytest.approx(0.7)


def test_real_sizes_are_the_defaults() -> None:
    config = FlowConfig()
    assert config.estimator.inner_dim == 512 and config.estimator.mlp_hidden == 2048
    assert (config.encoder.num_blocks, config.encoder.num_up_blocks) == (6, 4)


def test_another_class_is_refused_by_name(t2w_dir: Path) -> None:
    text = (t2w_dir / "flow.yaml").read_text().replace("decoder_dit.DiT", "decoder.ConditionalDecoder")
    with pytest.raises(CheckpointError, match=r"ConditionalDecoder.*needs DiT"):
        flow_config_from_yaml(text)
    v1 = (t2w_dir / "flow.yaml").read_text().replace("CausalMaskedDiffWithXvec", "MaskedDiffWithXvec")
    with pytest.raises(CheckpointError, match="MaskedDiffWithXvec"):
        flow_config_from_yaml(v1)


def test_unreadable_value_names_the_field(t2w_dir: Path) -> None:
    text = (t2w_dir / "flow.yaml").read_text().replace("depth: 2", "depth: two")
    with pytest.raises(CheckpointError, match=r"estimator\.depth"):
        flow_config_from_yaml(text)


def test_inconsistent_sizes_are_refused() -> None:
    with pytest.raises(CheckpointError, match="estimator takes"):
        FlowConfig(estimator=DiTConfig(in_channels=240))
    with pytest.raises(CheckpointError, match="input_size must equal"):
        EncoderConfig(input_size=256)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        flow_config_from_yaml(tmp_path / "flow.yaml")


def test_hift24k_topology() -> None:
    config = hift24k_config()
    assert config.upsample_total == 480 and config.sampling_rate == 24000
    assert hift24k_config(32, 16).f0_predictor.cond_channels == 16
