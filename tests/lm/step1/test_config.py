from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepaudio.errors import CheckpointError
from stepaudio.lm.step1.config import NAMED_SHAPES, Step1Config


def test_named_shapes_match_reference_table() -> None:
    tts, chat = NAMED_SHAPES["tts-3b"], NAMED_SHAPES["chat-130b"]
    assert (tts.hidden_size, tts.intermediate_size, tts.num_attention_heads, tts.head_dim) == (3072, 8192, 48, 64)
    assert (tts.num_attention_groups, tts.num_hidden_layers, tts.vocab_size) == (4, 32, 74752)
    assert (chat.hidden_size, chat.head_dim, chat.num_attention_groups, chat.num_hidden_layers) == (12288, 128, 8, 88)
    assert Step1Config.resolve("tts-3b") is tts


def test_from_json_ignores_unknown_fields_and_round_trips(tmp_path: Path) -> None:
    cfg = NAMED_SHAPES["tts-3b"]
    data = cfg.to_hf_dict() | {"some_future_field": 1, "eos_token_id": [3, 2]}
    (tmp_path / "config.json").write_text(json.dumps(data))
    loaded = Step1Config.resolve(tmp_path)
    assert loaded == cfg
    assert data["model_type"] == "step1" and data["tie_word_embeddings"] is False


def test_invalid_configs_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="num_attention_groups"):
        Step1Config(hidden_size=48, intermediate_size=8, num_attention_heads=6, num_attention_groups=4,
                    num_hidden_layers=1, vocab_size=8)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(CheckpointError, match="intermediate_size"):
        Step1Config.from_json(tmp_path)
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        Step1Config.from_json(tmp_path / "absent")
    (tmp_path / "config.json").write_text('{"hidden_size": 8,')  # a download cut short
    with pytest.raises(CheckpointError, match=r"config.json is not valid JSON \(.*\): re-download this config.json"):
        Step1Config.from_json(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="holds a JSON list, not an object"):
        Step1Config.from_json(tmp_path)


@pytest.mark.conformance
def test_conformance_config(conformance_dir: Path) -> None:
    cfg = Step1Config.from_json(conformance_dir / "step1")
    raw = json.loads((conformance_dir / "step1" / "config.json").read_text())
    assert cfg.hidden_size == raw["hidden_size"] and cfg.num_attention_groups == raw["num_attention_groups"]
