"""Rows -> examples: the exact TTS-3B prompt, the answer and its mask, the prompt speaker choice, and refusals."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from stepaudio.data.manifest import DatasetError, iter_rows, shard_paths
from stepaudio.text import system_prompts
from stepaudio.text.prompts import build_tts_prompt
from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.train.examples import (
    SpeakerPrompt,
    SpeakerTable,
    build_example,
    dataset_speakers,
    load_examples,
    tagged_text,
    write_speakers,
)

VOCAB = 74752


def test_example_is_the_tts_prompt_then_the_answer_with_a_mask_on_the_answer_only(
        dataset: Path, step_tokenizer: StepTokenizer) -> None:
    rows = list(iter_rows(dataset))
    row = next(r for r in rows if r.tags == ("高兴1",))
    prompt = SpeakerPrompt("参考文本。", (65536 + 7, 65536 + 1100))
    example = build_example(step_tokenizer, row, prompt, "Tingting")
    expected_prompt = build_tts_prompt(step_tokenizer, text="(高兴1)" + row.text, prompt_text="参考文本。",
                                       prompt_audio_ids=[65536 + 7, 65536 + 1100], speaker="Tingting")
    answer = [65536 + t for t in row.audio_tokens] + [3]
    assert example.input_ids.tolist() == expected_prompt + answer
    assert example.answer_start == len(expected_prompt)
    assert int(example.loss_mask.sum()) == example.target_tokens == len(answer)
    assert example.loss_mask[len(expected_prompt):].all()
    # The named-speaker system prompt, chosen as the inference path chooses it.
    system = step_tokenizer.encode("system\n" + system_prompts.TTS_NAMED_SPEAKER.format("Tingting"))
    assert example.input_ids[2 : 2 + len(system)].tolist() == system


def test_music_rows_get_the_music_system_prompt(dataset: Path, step_tokenizer: StepTokenizer) -> None:
    row = replace(next(iter(iter_rows(dataset))), tags=("RAP",))
    example = build_example(step_tokenizer, row, SpeakerPrompt("x", (65536,)), "Tingting")
    rap = step_tokenizer.encode("system\n" + system_prompts.TTS_RAP)
    assert example.input_ids[2 : 2 + len(rap)].tolist() == rap


def test_dataset_speakers_never_show_a_row_its_own_answer(dataset: Path) -> None:
    rows = list(iter_rows(dataset))
    table = dataset_speakers(rows, dataset)
    first, second = rows[0], rows[1]
    assert table.prompts["Tingting"].text == tagged_text(first)
    assert table.prompt_for(first, tagged_text(first)).lm_ids == tuple(65536 + t for t in second.audio_tokens)
    assert table.prompt_for(rows[5], tagged_text(rows[5])).lm_ids == tuple(65536 + t for t in first.audio_tokens)
    exported = write_speakers(table, dataset.parent / "exported_speakers")
    info = json.loads((exported / "speakers_info.json").read_text(encoding="utf-8"))
    assert info == {"Tingting": tagged_text(first)}
    assert (exported / "Tingting_prompt.wav").read_bytes() == (dataset / first.audio).read_bytes()


def test_load_examples_splits_held_out_rows_and_skips_single_row_voices(
        tmp_path: Path, step_tokenizer: StepTokenizer, make_dataset) -> None:  # type: ignore[no-untyped-def]
    root = make_dataset(tmp_path / "a", n_rows=30)
    make_dataset(tmp_path / "b", n_rows=1, voice="Solo", seed=9)
    shard = shard_paths(tmp_path / "b")[0]
    solo = shard.read_text(encoding="utf-8")
    (tmp_path / "b" / "audio").rename(tmp_path / "moved")
    for path in (tmp_path / "moved").iterdir():
        path.rename(root / "audio" / path.name) if not (root / "audio" / path.name).exists() else None
    with shard_paths(root)[-1].open("a", encoding="utf-8") as handle:
        handle.write(solo)
    examples = load_examples(root, step_tokenizer, vocab_size=VOCAB, max_length=4096, eval_fraction=0.2)
    assert examples.skipped == {"single-row voice": 1}
    assert len(examples.train) + len(examples.eval) == 30
    assert 0 < len(examples.eval) < 15
    again = load_examples(root, step_tokenizer, vocab_size=VOCAB, max_length=4096, eval_fraction=0.2)
    assert [e.row_id for e in again.eval] == [e.row_id for e in examples.eval]  # by id hash, stable
    short = load_examples(root, step_tokenizer, vocab_size=VOCAB, max_length=len(examples.train[0]) - 1)
    assert short.skipped.get("too long", 0) >= 1


def _corrupt(root: Path, edit) -> None:  # type: ignore[no-untyped-def]
    shard = shard_paths(root)[0]
    lines = shard.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[0])
    edit(row)
    lines[0] = json.dumps(row, ensure_ascii=False)
    shard.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize(("edit", "message"), [
    (lambda r: r.update(audio_tokens=[1, 5120]), r"manifest-00000.jsonl:1: .*5120.*outside 0..5119"),
    (lambda r: r.update(text="  "), r"manifest-00000.jsonl:1: empty text"),
    (lambda r: r.update(audio="audio/zz/missing.wav"), r"manifest-00000.jsonl:1: .*missing"),
    (lambda r: r.update(audio_tokens=[]), r"no audio tokens"),
    (lambda r: r.update(tags=["开心"]), r"unknown instruction tag '开心'"),
    (lambda r: r.update(prompt_text="参考"), r"needs both prompt_text and prompt_audio"),
])
def test_bad_datasets_are_refused_with_the_file_and_line(
        tmp_path: Path, step_tokenizer: StepTokenizer, make_dataset, edit, message: str,  # type: ignore[no-untyped-def]
) -> None:
    root = make_dataset(tmp_path / "d", n_rows=4)
    _corrupt(root, edit)
    with pytest.raises(DatasetError, match=message):
        load_examples(root, step_tokenizer, vocab_size=VOCAB, max_length=4096)


def test_other_refusals(tmp_path: Path, step_tokenizer: StepTokenizer, make_dataset) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DatasetError, match="not a stepaudio dataset"):
        load_examples(tmp_path, step_tokenizer, vocab_size=VOCAB, max_length=4096)
    root = make_dataset(tmp_path / "d", n_rows=4)
    with pytest.raises(DatasetError, match="no room for the audio ids"):
        load_examples(root, step_tokenizer, vocab_size=65536, max_length=4096)
    _corrupt(root, lambda r: r.update(prompt_text="参考", prompt_audio="elsewhere/p.wav"))
    with pytest.raises(DatasetError, match=r"prompt audio .* is missing"):
        load_examples(root, step_tokenizer, vocab_size=VOCAB, max_length=4096)
    fresh = make_dataset(tmp_path / "e", n_rows=4)
    with pytest.raises(DatasetError, match="no prompt speaker 'Tingting'"):
        load_examples(fresh, step_tokenizer, vocab_size=VOCAB, max_length=4096,
                      speakers=SpeakerTable({"Other": SpeakerPrompt("t", (65536,))}))


def test_clone_rows_use_the_clone_prompt_and_their_prompt_rows_tokens(
        tmp_path: Path, step_tokenizer: StepTokenizer, make_dataset) -> None:  # type: ignore[no-untyped-def]
    root = make_dataset(tmp_path / "d", n_rows=6)
    rows = list(iter_rows(root))
    _corrupt(root, lambda r: r.update(prompt_text=rows[3].text, prompt_audio=rows[3].audio))
    examples = load_examples(root, step_tokenizer, vocab_size=VOCAB, max_length=4096, eval_fraction=0.0)
    clone = next(e for e in examples.train if e.row_id == rows[0].id)
    system = step_tokenizer.encode("system\n" + system_prompts.TTS_CLONE)
    assert clone.input_ids[2 : 2 + len(system)].tolist() == system
    ids = clone.input_ids.tolist()
    prompt_audio = [65536 + t for t in rows[3].audio_tokens]
    assert any(ids[i : i + len(prompt_audio)] == prompt_audio for i in range(clone.answer_start))
