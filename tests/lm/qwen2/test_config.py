from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepaudio.errors import CheckpointError
from stepaudio.lm.qwen2.config import Qwen2Config

QWEN25_7B = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_act": "silu",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "rope_scaling": None,
    "tie_word_embeddings": False,
    "use_sliding_window": False,
    "eos_token_id": 151643,
    "torch_dtype": "bfloat16",
}


def test_plain_qwen2_config_and_round_trip(tmp_path: Path) -> None:
    cfg = Qwen2Config.from_dict(QWEN25_7B)
    assert (cfg.head_dim, cfg.kv_dim, cfg.group_size) == (128, 512, 7)
    assert cfg.eos_token_ids == (151643,) and cfg.pad_token_id == 0 and not cfg.tie_word_embeddings
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_hf_dict()))
    assert Qwen2Config.from_json(tmp_path) == cfg


def test_step_audio2_nests_the_decoder_and_names_kv_heads_groups() -> None:
    text = {k: v for k, v in QWEN25_7B.items() if k not in ("num_key_value_heads", "torch_dtype")}
    outer = {"model_type": "step_audio_2", "torch_dtype": "bfloat16", "audio_encoder_config": {"n_mels": 128},
             "text_config": text | {"num_attention_groups": 4, "vocab_size": 158720, "eos_token_id": [1, 2],
                                    "pad_token_id": None}}
    cfg = Qwen2Config.from_dict(outer)
    assert cfg.num_key_value_heads == 4 and cfg.vocab_size == 158720 and cfg.eos_token_ids == (1, 2)
    assert cfg.torch_dtype == "bfloat16" and cfg.pad_token_id == 0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"rope_scaling": {"type": "yarn", "factor": 4.0}}, "rope_scaling"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"use_sliding_window": True}, "sliding"),
        ({"head_dim": 64}, "head_dim"),
        ({"num_key_value_heads": 5}, "num_key_value_heads"),
    ],
)
def test_unsupported_settings_are_refused(change: dict, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        Qwen2Config.from_dict(QWEN25_7B | change)


def test_missing_fields_and_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="intermediate_size"):
        Qwen2Config.from_dict({"hidden_size": 8})
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        Qwen2Config.from_json(tmp_path)


@pytest.mark.conformance
def test_conformance_step_audio2_config(conformance_dir: Path) -> None:
    raw = json.loads((conformance_dir / "step-audio2" / "llm" / "config.json").read_text())["text_config"]
    cfg = Qwen2Config.from_json(conformance_dir / "step-audio2" / "llm")
    assert cfg.hidden_size == raw["hidden_size"] and cfg.num_key_value_heads == raw["num_key_value_heads"]
    assert cfg.rope_theta == raw["rope_theta"] and cfg.rms_norm_eps == raw["rms_norm_eps"]
    assert cfg.eos_token_ids == (raw["eos_token_id"],) and not cfg.tie_word_embeddings
