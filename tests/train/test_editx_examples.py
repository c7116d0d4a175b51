"""EditX training examples: each is the prompt the editx engine builds at inference (the conformance-tested builders)
plus the answer; Step tags are turned into EditX dialect tags or skipped; edit pairs are read from edits.jsonl."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stepaudio.data.manifest import DatasetError, DatasetRow, iter_rows
from stepaudio.engines.editx.audio import read_raw
from stepaudio.text.editx_prompts import Edit, build_clone_prompt, build_edit_prompt, clone_voice_id
from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.text.vocab import STEP1
from stepaudio.train.editx_examples import (
    EDITS_FILE,
    EditPair,
    edit_pairs_lines,
    editx_text,
    load_editx_examples,
    read_edit_pairs,
)

VOCAB = 74752


def _answer(row: DatasetRow) -> list[int]:
    return [STEP1.audio_offset + t for t in row.audio_tokens] + list(STEP1.stop_ids)


def _rows(dataset: Path) -> list[DatasetRow]:
    return list(iter_rows(dataset))


def write_edits(dataset: Path, rows: list[DatasetRow]) -> list[EditPair]:
    """Plain rows edited into the rows after them: an emotion, a style and a paralinguistic edit."""
    plain = [r for r in rows if not r.tags]
    pairs = [EditPair(plain[0].id, plain[1].id, Edit("emotion", "happy")),
             EditPair(plain[1].id, plain[2].id, Edit("style", "whisper")),
             EditPair(plain[2].id, plain[3].id, Edit("paralinguistic", new_text=f"[Laughter]{plain[3].text}"))]
    (dataset / EDITS_FILE).write_text(edit_pairs_lines(pairs), encoding="utf-8")
    return pairs


def test_clone_examples_are_the_engines_clone_prompts(make_dataset, step_tokenizer: StepTokenizer,  # type: ignore[no-untyped-def]
                                                      tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "data", n_rows=12)
    rows = _rows(dataset)
    examples = load_editx_examples(dataset, step_tokenizer, vocab_size=VOCAB, max_length=4096, eval_fraction=0.0)
    # tags cycle (), (高兴1), (四川话), (高兴1, 慢速1): emotion and speed tags have no EditX prompt
    assert examples.skipped == {"step tags": 6}
    assert [e.row_id for e in examples.train] == [r.id for r in rows if r.tags in ((), ("四川话",))]
    first, second = rows[0], rows[1]  # the voice's reference is its first row; that row is prompted with its second
    by_id = {e.row_id: e for e in examples.train}
    for row, reference in ((rows[4], first), (first, second)):
        path = dataset / reference.audio
        prompt = build_clone_prompt(step_tokenizer, target_text=row.text, prompt_text=reference.text,
                                    speaker=clone_voice_id(reference.text, read_raw(path).channels),
                                    prompt_audio_ids=[STEP1.audio_offset + t for t in reference.audio_tokens])
        example = by_id[row.id]
        assert example.input_ids.tolist() == prompt + _answer(row)
        assert example.answer_start == len(prompt) and example.loss_mask.sum() == len(row.audio_tokens) + 1
    sichuan = by_id[rows[2].id]
    said = step_tokenizer.encode("\n[Sichuanese]" + rows[2].text)[3:]
    ids = sichuan.input_ids.tolist()
    assert any(ids[i : i + len(said)] == said for i in range(len(ids)))
    assert editx_text(rows[2]) == "[Sichuanese]" + rows[2].text


def test_edit_examples_follow_edits_jsonl(make_dataset, step_tokenizer: StepTokenizer,  # type: ignore[no-untyped-def]
                                          tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "data", n_rows=16)
    rows = _rows(dataset)
    pairs = write_edits(dataset, rows)
    assert read_edit_pairs(dataset) == pairs
    examples = load_editx_examples(dataset, step_tokenizer, vocab_size=VOCAB, max_length=4096, eval_fraction=0.0)
    by_id = {e.row_id: e for e in examples.train}
    by_row = {r.id: r for r in rows}
    for pair in pairs:
        source, target = by_row[pair.source], by_row[pair.target]
        prompt = build_edit_prompt(step_tokenizer, instruction=pair.edit.instruction(source.text),
                                   prompt_audio_ids=[STEP1.audio_offset + t for t in source.audio_tokens])
        example = by_id[f"{source.id}>{target.id}"]
        assert example.input_ids.tolist() == prompt + _answer(target) and example.answer_start == len(prompt)
    assert len(examples.train) == 8 + 3  # 8 rows without emotion/speed tags and the 3 edits


def test_bad_edit_lines_and_unknown_rows_are_refused(make_dataset, step_tokenizer: StepTokenizer,  # type: ignore[no-untyped-def]
                                                     tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "data", n_rows=8)
    rows = _rows(dataset)
    edits = dataset / EDITS_FILE
    edits.write_text(f'{{"source": "{rows[0].id}", "target": "{rows[1].id}", "type": "emotion"}}\n')
    with pytest.raises(DatasetError, match=f"{EDITS_FILE}:1: emotion edit needs one of"):
        read_edit_pairs(dataset)
    edits.write_text(f'\n{{"source": "{rows[0].id}", "type": "denoise"}}\n')
    with pytest.raises(DatasetError, match=":2: needs \"source\" and \"target\""):
        read_edit_pairs(dataset)
    edits.write_text(f'{{"source": "{rows[0].id}", "target": "00000000deadbeef", "type": "vad"}}\n')
    with pytest.raises(DatasetError, match="no row '00000000deadbeef'"):
        load_editx_examples(dataset, step_tokenizer, vocab_size=VOCAB, max_length=4096)
    with pytest.raises(DatasetError, match="vocab_size"):
        load_editx_examples(dataset, step_tokenizer, vocab_size=1000, max_length=4096)


def test_held_out_and_too_long(make_dataset, step_tokenizer: StepTokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dataset = make_dataset(tmp_path / "data", n_rows=40)
    everything = load_editx_examples(dataset, step_tokenizer, vocab_size=VOCAB, max_length=4096, eval_fraction=0.0)
    split = load_editx_examples(dataset, step_tokenizer, vocab_size=VOCAB, max_length=4096, eval_fraction=0.3)
    assert split.eval and len(split.train) + len(split.eval) == len(everything.train)
    lengths = np.array([len(e) for e in everything.train])
    cut = int(np.median(lengths))
    short = load_editx_examples(dataset, step_tokenizer, vocab_size=VOCAB, max_length=cut, eval_fraction=0.0)
    assert short.skipped["too long"] == int((lengths > cut).sum()) > 0
