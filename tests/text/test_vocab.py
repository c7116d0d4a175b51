from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.text.vocab import STEP1, STEP_AUDIO2, audio_piece, audio_piece_numbers


def test_audio_pieces_round_trip() -> None:
    text = "".join(audio_piece(n) for n in (0, 1024, 5119)) + "hi <audio_x> <audio_7>"
    assert audio_piece_numbers(text) == [0, 1024, 5119, 7]


def test_stop_ids_and_audio_ranges() -> None:
    assert STEP1.stop_ids == (STEP1.eot_id,) == (3,)
    assert STEP1.audio_offset + STEP1.audio_pieces == STEP1.vocab_size
    assert STEP1.is_audio_piece_id(65536) and STEP1.is_audio_piece_id(74751) and not STEP1.is_audio_piece_id(65535)
    assert STEP_AUDIO2.eot_id is None and STEP_AUDIO2.stop_ids == STEP_AUDIO2.eos_ids
    assert STEP_AUDIO2.is_audio_id(STEP_AUDIO2.audio_offset + 6561) and not STEP_AUDIO2.is_audio_id(151695)
    assert STEP_AUDIO2.text_ids_below == STEP_AUDIO2.audio_start_id < STEP_AUDIO2.audio_offset


def test_unverified_names_real_fields() -> None:
    for vocab in (STEP1, STEP_AUDIO2):
        assert set(vocab.unverified) <= {f.name for f in fields(vocab)}
    assert "audio_offset" not in STEP_AUDIO2.unverified and "audio_start_id" not in STEP_AUDIO2.unverified


@pytest.mark.conformance
def test_step1_facts_match_the_real_tokenizer(step_tokenizer: StepTokenizer) -> None:
    tok = step_tokenizer
    assert tok.vocab_size == STEP1.vocab_size
    named = {"<s>": STEP1.bos_id, "</s>": STEP1.eos_id, STEP1.eot: STEP1.eot_id, STEP1.bot: STEP1.bot_id,
             STEP1.call_start: STEP1.call_start_id, STEP1.call_end: STEP1.call_end_id,
             "<audio_start>": STEP1.audio_start_id, "<audio_end>": STEP1.audio_end_id}
    for piece, token_id in named.items():
        assert tok.piece_to_id(piece) == token_id, piece
    assert tok.piece_to_id(audio_piece(0)) == STEP1.audio_offset
    assert tok.piece_to_id(audio_piece(STEP1.audio_pieces - 1)) == STEP1.vocab_size - 1


@pytest.mark.conformance
def test_step_audio2_special_order_matches_the_conformance_tiny_vocab(conformance_dir: Path) -> None:
    meta = json.loads((conformance_dir / "step-audio2" / "llm" / "meta.json").read_text())
    tiny = meta["tiny_special_ids"]
    start = tiny[STEP_AUDIO2.audio_start]
    assert tiny[STEP_AUDIO2.audio_end] - start == STEP_AUDIO2.audio_end_id - STEP_AUDIO2.audio_start_id
    assert tiny[STEP_AUDIO2.audio_patch] - start == STEP_AUDIO2.audio_patch_id - STEP_AUDIO2.audio_start_id
    assert {STEP_AUDIO2.bot, STEP_AUDIO2.eot, STEP_AUDIO2.tts_start, STEP_AUDIO2.tts_end} <= set(tiny)
