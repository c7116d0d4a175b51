from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepaudio.audio_encoder.config import AudioEncoderConfig
from stepaudio.errors import CheckpointError

RELEASE_SECTION = {
    "n_mels": 128,
    "n_audio_ctx": 1500,
    "n_audio_state": 1280,
    "n_audio_head": 20,
    "n_audio_layer": 32,
    "n_codebook_size": 4096,
    "llm_dim": 3584,
    "kernel_size": 3,
    "adapter_stride": 2,
}


def test_release_config_nests_the_section_and_keeps_the_outer_dtype(tmp_path: Path) -> None:
    outer = {
        "model_type": "step_audio_2",
        "torch_dtype": "bfloat16",
        "audio_encoder_config": RELEASE_SECTION,
        "text_config": {"hidden_size": 3584},
    }
    cfg = AudioEncoderConfig.from_dict(outer)
    assert (cfg.n_audio_state, cfg.head_dim, cfg.llm_dim, cfg.torch_dtype) == (1280, 64, 3584, "bfloat16")
    assert cfg.to_dict() == RELEASE_SECTION
    (tmp_path / "config.json").write_text(json.dumps(outer))
    assert AudioEncoderConfig.from_json(tmp_path) == cfg
    assert AudioEncoderConfig.from_dict(RELEASE_SECTION).torch_dtype == "bfloat16"  # the section alone


def test_bad_configs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="llm_dim"):
        AudioEncoderConfig.from_dict({k: v for k, v in RELEASE_SECTION.items() if k != "llm_dim"})
    with pytest.raises(CheckpointError, match="n_audio_head"):
        AudioEncoderConfig.from_dict(RELEASE_SECTION | {"n_audio_head": 7})
    with pytest.raises(CheckpointError, match="adapter_stride"):
        AudioEncoderConfig.from_dict(RELEASE_SECTION | {"adapter_stride": 0})
    with pytest.raises(CheckpointError, match="not an object"):
        AudioEncoderConfig.from_dict({"audio_encoder_config": [1]})
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        AudioEncoderConfig.from_json(tmp_path)


@pytest.mark.conformance
def test_conformance_config(conformance_dir: Path) -> None:
    folder = conformance_dir / "step-audio2"
    raw = json.loads((folder / "encoder" / "config.json").read_text())["audio_encoder_config"]
    cfg = AudioEncoderConfig.from_json(folder / "llm")
    assert cfg.to_dict() == raw and cfg.torch_dtype == "float32"
    assert AudioEncoderConfig.from_json(folder / "encoder") == cfg
