from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepaudio.errors import CheckpointError
from stepaudio.text.tokenizer import StepTokenizer

pytestmark = pytest.mark.conformance

def test_plain_cases_match_reference_id_for_id(step_tokenizer: StepTokenizer, text_dir: Path) -> None:
    data = json.loads((text_dir / "plain.json").read_text(encoding="utf-8"))
    assert len(data["cases"]) >= 10
    for case in data["cases"]:
        text = case["text"]
        assert step_tokenizer.encode(text) == case["ids"], text
        assert step_tokenizer.encode(text, add_bos=False) == case["ids_no_special"], text
        assert [step_tokenizer.id_to_piece(i) for i in case["ids_no_special"]] == case["tokens"], text
        assert step_tokenizer.decode(case["ids_no_special"]) == case["decode"], text
        assert step_tokenizer.decode(case["ids"]) == case["decode_with_bos"], text
        assert step_tokenizer.decode(case["ids_no_special"], skip_special_tokens=True) == case[
            "decode_skip_special"
        ], text

def test_special_token_ids(step_tokenizer: StepTokenizer, text_dir: Path) -> None:
    data = json.loads((text_dir / "plain.json").read_text(encoding="utf-8"))
    assert step_tokenizer.vocab_size == data["vocab_size"]
    for piece, token_id in data["special_token_ids"].items():
        assert step_tokenizer.piece_to_id(piece) == token_id
        assert step_tokenizer.encode(piece, add_bos=False) == [token_id]
    for token_id, piece in data["id_to_token"].items():
        assert step_tokenizer.id_to_piece(int(token_id)) == piece

def test_word_after_special_token_has_no_space_prefix(step_tokenizer: StepTokenizer) -> None:
    after_special = step_tokenizer.encode("<|BOT|>human", add_bos=False)
    at_start = step_tokenizer.encode("human", add_bos=False)
    assert after_special[0] == 4
    assert step_tokenizer.id_to_piece(after_special[1]) == "human"
    assert step_tokenizer.id_to_piece(at_start[0]) == "▁human"

def test_unknown_angle_text_is_not_atomic(step_tokenizer: StepTokenizer) -> None:
    ids = step_tokenizer.encode("<audio_x><not_a_token>", add_bos=False)
    assert all(i < 65536 for i in ids)
    assert step_tokenizer.decode(ids) == "<audio_x><not_a_token>"

def test_decode_rejects_out_of_range_ids(step_tokenizer: StepTokenizer) -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        step_tokenizer.decode([step_tokenizer.vocab_size])

def test_round_trip_of_mixed_text(step_tokenizer: StepTokenizer) -> None:
    text = "今天 weather is 好<|EOT|>ok <audio_5> 😀 tab\there"
    assert step_tokenizer.decode(step_tokenizer.encode(text, add_bos=False)) == text

def test_missing_or_bad_model_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        StepTokenizer(tmp_path / "nope.model")
    bad = tmp_path / "tokenizer.model"
    bad.write_bytes(b"\x00not a model")
    with pytest.raises(CheckpointError):
        StepTokenizer(tmp_path)
