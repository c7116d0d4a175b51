"""Dataset rows -> Step-Audio-EditX training examples: the release's clone and edit prompts plus the audio answer.

Prompts come from `text.editx_prompts`, the builders the editx engine uses at inference (conformance-tested
against the reference), so the model is trained on exactly what it will be asked:

- **Clone** (one per row): the voice in the system turn (speaker name, its transcript, its audio ids), the row's
  text in the human turn, the row's audio as the answer. A clone row (`prompt_text` + `prompt_audio`) is
  prompted with its own prompt; any other row with a reference of its voice from the same dataset (its first
  row, transcript without tags; that row with its second, as `examples.dataset_speakers` chooses). The speaker
  name is the engine's `clone_voice_id` of the prompt wav when the file is there.
- **Edit** (one per line of `DATASET/edits.jsonl`): `{"source": ROW_ID, "target": ROW_ID, "type": "emotion",
  "option": "happy"}` (`new_text` for paralinguistic edits): the fixed edit system prompt, the instruction with
  the source row's text and audio ids in the human turn, the target row's audio as the answer. Every type and
  option of the release is accepted, nothing else.

Step-Audio's tags have no place in these prompts: a dialect tag (`四川话`, `粤语`, ...) becomes EditX's text
tag (`[Sichuanese]...`); a row with any other tag (emotion, speed, ...) is skipped and counted (say it with an
edit pair instead). The loss is on the answer only, as for the Step TTS examples.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stepaudio.data.manifest import DatasetError, DatasetRow, iter_rows
from stepaudio.engines.editx.audio import read_raw
from stepaudio.engines.editx.synthesizer import DIALECTS, apply_dialect
from stepaudio.errors import StepAudioError
from stepaudio.text.editx_prompts import Edit, build_clone_prompt, build_edit_prompt, clone_voice_id
from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.text.vocab import STEP1
from stepaudio.tokenizer.interleave import FLOW_VOCAB
from stepaudio.train.examples import (
    ExampleSet,
    SpeakerPrompt,
    SpeakerTable,
    Tokenize,
    TrainExample,
    is_clone,
    is_held_out,
    resolve_clone_prompt,
)

EDITS_FILE = "edits.jsonl"


@dataclass(frozen=True)
class EditPair:
    """One edit example: `target` is `source` with `edit` applied (both dataset rows)."""

    source: str
    target: str
    edit: Edit


def read_edit_pairs(dataset: str | Path) -> list[EditPair]:
    """`DATASET/edits.jsonl` (absent: no edit examples); DatasetError naming the line of a bad entry."""
    path = Path(dataset) / EDITS_FILE
    if not path.is_file():
        return []
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict) or not isinstance(data.get("source"), str) or not isinstance(
                    data.get("target"), str):
                raise ValueError("needs \"source\" and \"target\" row ids")
            edit = Edit(str(data.get("type")), data.get("option"), data.get("new_text"))
        except (ValueError, StepAudioError) as exc:
            raise DatasetError(f"{path}:{number}: {exc}") from exc
        pairs.append(EditPair(data["source"], data["target"], edit))
    return pairs


def editx_text(row: DatasetRow) -> str:
    """The row's text as EditX reads it: a Step dialect tag becomes EditX's `[Dialect]` prefix; StepAudioError for
    any other tag."""
    text = row.text
    for tag in row.tags:
        if tag.strip().lower() not in DIALECTS:
            raise StepAudioError(f"row {row.id}: EditX prompts cannot say the tag {tag!r}")
        text = apply_dialect(text, tag)
    return text


def _speaker(prompt: SpeakerPrompt) -> str:
    """The engine's clone name for this prompt wav (any name works for the model; this one is what inference uses)."""
    samples = read_raw(prompt.audio).channels if prompt.audio is not None and prompt.audio.is_file() else np.zeros(0)
    return clone_voice_id(prompt.text, samples)


def voice_prompts(rows: Sequence[DatasetRow], root: Path) -> SpeakerTable:
    """Each voice's reference: its first (non-clone) row, transcript as said (no tags); that row gets the second;
    a voice with one row has no reference for it (skipped)."""
    by_voice: dict[str, list[DatasetRow]] = {}
    for row in rows:
        if not is_clone(row):
            by_voice.setdefault(row.voice, []).append(row)

    def reference(row: DatasetRow) -> SpeakerPrompt:
        return SpeakerPrompt(row.text, tuple(STEP1.audio_offset + t for t in row.audio_tokens), root / row.audio)

    prompts = {voice: reference(voice_rows[0]) for voice, voice_rows in by_voice.items()}
    row_prompts = {v[0].id: reference(v[1]) for v in by_voice.values() if len(v) > 1}
    skipped = frozenset(v[0].id for v in by_voice.values() if len(v) == 1)
    return SpeakerTable(prompts, row_prompts, skipped)


def _answer(row: DatasetRow) -> list[int]:
    if not row.audio_tokens:
        raise DatasetError(f"row {row.id}: no audio tokens (nothing to learn)")
    return [STEP1.audio_offset + t for t in row.audio_tokens] + list(STEP1.stop_ids)


def clone_example(tokenizer: StepTokenizer, row: DatasetRow, prompt: SpeakerPrompt) -> TrainExample:
    ids = build_clone_prompt(tokenizer, target_text=editx_text(row), prompt_text=prompt.text, speaker=_speaker(prompt),
                             prompt_audio_ids=prompt.lm_ids)
    return TrainExample.of(row.id, ids + _answer(row), len(ids))


def edit_example(tokenizer: StepTokenizer, source: DatasetRow, target: DatasetRow, edit: Edit) -> TrainExample:
    if not source.audio_tokens:
        raise DatasetError(f"row {source.id}: no audio tokens to edit")
    ids = build_edit_prompt(tokenizer, instruction=edit.instruction(editx_text(source)),
                            prompt_audio_ids=[STEP1.audio_offset + t for t in source.audio_tokens])
    return TrainExample.of(f"{source.id}>{target.id}", ids + _answer(target), len(ids))


def load_editx_examples(
    dataset: str | Path,
    tokenizer: StepTokenizer,
    *,
    vocab_size: int,
    max_length: int,
    tokenize: Tokenize | None = None,
    eval_fraction: float = 0.05,
) -> ExampleSet:
    """Every row as a clone example and every line of `edits.jsonl` as an edit example; held-out rows (by the id
    hash of the row, or of an edit's target) go to `eval`."""
    if vocab_size < STEP1.audio_offset + FLOW_VOCAB:
        raise DatasetError(f"the model's vocab_size {vocab_size} has no room for the audio ids")
    if not 0.0 <= eval_fraction < 1.0:
        raise DatasetError(f"eval fraction must be in [0, 1), got {eval_fraction}")
    root = Path(dataset)
    rows = list(iter_rows(root))
    if not rows:
        raise DatasetError(f"{root}: the dataset has no rows")
    by_id = {row.id: row for row in rows}
    by_audio = {row.audio: row for row in rows}
    table = voice_prompts(rows, root)
    skipped = {"single-row voice": len(table.skipped_rows), "step tags": 0, "too long": 0}
    train: list[TrainExample] = []
    held: list[TrainExample] = []

    def add(example: TrainExample, key: str) -> None:
        if len(example) > max_length:
            skipped["too long"] += 1
        else:
            (held if is_held_out(key, eval_fraction) else train).append(example)

    for row in rows:
        if row.id in table.skipped_rows:
            continue
        if any(tag.strip().lower() not in DIALECTS for tag in row.tags):
            skipped["step tags"] += 1
            continue
        if is_clone(row):
            assert row.prompt_audio is not None
            found = resolve_clone_prompt(root, row, by_audio, tokenize)
            prompt = SpeakerPrompt(found.text, found.lm_ids, root / row.prompt_audio)
        else:
            prompt = table.prompt_for(row, row.text)
        add(clone_example(tokenizer, row, prompt), row.id)
    for pair in read_edit_pairs(root):
        missing = [rid for rid in (pair.source, pair.target) if rid not in by_id]
        if missing:
            raise DatasetError(f"{root / EDITS_FILE}: no row {missing[0]!r} in the dataset")
        source, target = by_id[pair.source], by_id[pair.target]
        try:
            example = edit_example(tokenizer, source, target, pair.edit)
        except StepAudioError as exc:
            raise DatasetError(f"{root / EDITS_FILE}: {exc}") from exc
        add(example, target.id)
    if not train:
        raise DatasetError(f"{root}: no trainable examples ({_describe(skipped)})")
    return ExampleSet(tuple(train), tuple(held), table, {k: v for k, v in skipped.items() if v})


def _describe(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in counts.items() if n) or "none skipped"


def edit_pairs_lines(pairs: Sequence[EditPair]) -> str:
    """`edits.jsonl` text for `pairs` (what `read_edit_pairs` reads back)."""
    lines = []
    for pair in pairs:
        entry: dict[str, object] = {"source": pair.source, "target": pair.target, "type": pair.edit.edit_type}
        if pair.edit.option is not None:
            entry["option"] = pair.edit.option
        if pair.edit.new_text is not None:
            entry["new_text"] = pair.edit.new_text
        lines.append(json.dumps(entry, ensure_ascii=False))
    return "\n".join(lines) + "\n"
