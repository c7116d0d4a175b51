"""The release tokenizer.json through `tokenizers`: token facts read by spelling, streamed decoding."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from stepaudio.engines.step2.tokenizer import Step2Tokenizer
from stepaudio.errors import CheckpointError
from stepaudio.testing.tiny_step2 import step2_specials, tiny_step2_tokenizer
from stepaudio.text.vocab import STEP_AUDIO2


def test_the_vocab_is_read_off_the_tokenizer() -> None:
    tokenizer = Step2Tokenizer(tiny_step2_tokenizer())
    ids = {name: i for i, name in step2_specials().items()}
    vocab = tokenizer.vocab
    assert (vocab.audio_start_id, vocab.audio_end_id, vocab.audio_patch_id) == (
        ids["<audio_start>"], ids["<audio_end>"], ids["<audio_patch>"])
    assert vocab.audio_offset == ids["<audio_0>"] and vocab.is_audio_id(ids["<audio_6561>"])
    assert vocab.eot_id == ids["<|EOT|>"] and vocab.eot_id in vocab.stop_ids and vocab.unverified == ()
    # the real layout: the splice anchor ends the text ids; start..tts_end and the audio offset keep their spacing
    assert vocab.text_ids_below == vocab.audio_start_id
    real = STEP_AUDIO2
    assert vocab.audio_offset - vocab.audio_start_id == real.audio_offset - real.audio_start_id
    assert vocab.tts_start_id - vocab.audio_start_id == real.tts_start_id - real.audio_start_id


def test_streamed_text_equals_the_whole_decode() -> None:
    tokenizer = Step2Tokenizer(tiny_step2_tokenizer())
    ids = tokenizer.encode("你好, world <|EOT|>")
    stream = tokenizer.stream()
    pieces = [stream.push(i) for i in ids]
    assert "".join(pieces) == tokenizer.decode(ids) == "你好, world <|EOT|>"
    assert pieces[:3] == ["", "", "你"]  # a character waits for all its bytes


def test_files_that_are_not_the_release_tokenizer(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no tokenizer\.json"):
        Step2Tokenizer.from_dir(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not a tokenizers file"):
        Step2Tokenizer.from_dir(tmp_path)
    bare = tiny_step2_tokenizer()
    Tokenizer(bare.model).save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(CheckpointError, match="no '<audio_start>' token"):
        Step2Tokenizer.from_dir(tmp_path)
