"""Dataset rows -> training examples: the exact TTS-3B prompt (REFERENCE.md §5) plus the audio answer.

An example is `build_tts_prompt(...)` (the same builder the Step TTS path uses at inference) followed by
the row's audio as LM ids (`STEP1.audio_offset` + flow id) and the stop id `<|EOT|>`. The loss mask is 1
only on that answer (audio ids and the final stop), so the model learns to speak, never to predict its own
prompt.

The prompt speaker. At inference the TTS-3B prompt for a built-in speaker V holds V's reference
transcript (speakers_info.json) and the audio tokens of V's silence-trimmed prompt wav, as one
human/assistant exchange before the target text; the system prompt names V. Training must show the
model the same shape, so every row of voice V is prompted with one fixed reference exchange of V:

- `folder_speakers(MODELS/speakers, audio tokenizer)`: the model folder's own speakers, tokenised as the
  Step TTS path does (trim=True). Training prompts are then identical to inference prompts; use it when
  fine-tuning voices the model folder already has (RAP / 哼唱 rows use the `VRAP` / `V哼唱` entries).
- `dataset_speakers(rows)` (the default): the reference exchange of V is V's first row in manifest order
  (its text and audio tokens). That row itself is prompted with V's second row (a row must never see its
  own answer); a voice with a single row cannot be prompted and its row is skipped. `write_speakers`
  exports these references as a `speakers/` folder (speakers_info.json + V_prompt.wav) so that the Step
  TTS path prompts the trained model as training did.

Clone rows (`prompt_text` and `prompt_audio` set) use the speaker-less clone system prompt and their own
prompt: its audio tokens come from the dataset row whose `audio` is that file, else from the audio
tokenizer when one is given.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stepaudio.data.manifest import DatasetError, DatasetRow, iter_rows
from stepaudio.engines.step.voices import read_speakers_file
from stepaudio.errors import CheckpointError
from stepaudio.text.prompts import build_tts_prompt, builtin_speaker_key
from stepaudio.text.tags import KNOWN_TAGS
from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.text.vocab import STEP1
from stepaudio.tokenizer.interleave import FLOW_VOCAB

IGNORE_INDEX = -100

Tokenize = Callable[[Path], Sequence[int]]  # a prompt wav -> LM audio ids (trimmed, as inference does)


@dataclass(frozen=True)
class SpeakerPrompt:
    """One reference exchange: transcript and its LM audio ids; `audio` is the wav it came from."""

    text: str
    lm_ids: tuple[int, ...]
    audio: Path | None = None


@dataclass(frozen=True, eq=False)
class TrainExample:
    """Prompt + answer ids; the loss is on ids[answer_start:] (the answer's audio ids and the final stop).

    Ids are a read-only int32 array: a Python tuple would cost ~36 bytes a token, 4 GB per 10^8 tokens.
    """

    row_id: str
    input_ids: np.ndarray
    answer_start: int

    @classmethod
    def of(cls, row_id: str, ids: Sequence[int], answer_start: int) -> TrainExample:
        array = np.asarray(ids, dtype=np.int32)
        if not 0 < answer_start < len(array):
            raise ValueError(f"answer start {answer_start} is outside 1..{len(array) - 1}")
        array.flags.writeable = False
        return cls(row_id, array, answer_start)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def loss_mask(self) -> np.ndarray:
        return np.arange(len(self.input_ids)) >= self.answer_start

    @property
    def target_tokens(self) -> int:
        return len(self.input_ids) - self.answer_start


@dataclass(frozen=True)
class SpeakerTable:
    """Voice entry -> reference prompt, plus the prompts of rows that are themselves a reference."""

    prompts: Mapping[str, SpeakerPrompt]
    row_prompts: Mapping[str, SpeakerPrompt] = field(default_factory=dict)
    skipped_rows: frozenset[str] = frozenset()
    music_entries: bool = False  # use `VRAP` / `V哼唱` for music rows (a speakers folder has them)

    def prompt_for(self, row: DatasetRow, tagged_text: str) -> SpeakerPrompt:
        if row.id in self.row_prompts:
            return self.row_prompts[row.id]
        key = builtin_speaker_key(row.voice, tagged_text) if self.music_entries else row.voice
        if key not in self.prompts:
            known = ", ".join(sorted(self.prompts)) or "none"
            raise DatasetError(f"row {row.id}: no prompt speaker {key!r} (known: {known})")
        return self.prompts[key]


def tagged_text(row: DatasetRow) -> str:
    """The text the model reads: the row's tags in `(...)` before the target text, as the TTS path builds it."""
    return "".join(f"({tag})" for tag in row.tags) + row.text


def dataset_speakers(rows: Sequence[DatasetRow], root: str | Path) -> SpeakerTable:
    """Each voice's first (non-clone) row of the dataset at `root` is its reference; see the module docstring."""
    by_voice: dict[str, list[DatasetRow]] = {}
    for row in rows:
        if not is_clone(row):
            by_voice.setdefault(row.voice, []).append(row)
    prompts: dict[str, SpeakerPrompt] = {}
    row_prompts: dict[str, SpeakerPrompt] = {}
    skipped: set[str] = set()
    for voice, voice_rows in by_voice.items():
        prompts[voice] = _row_prompt(voice_rows[0], Path(root))
        if len(voice_rows) > 1:
            row_prompts[voice_rows[0].id] = _row_prompt(voice_rows[1], Path(root))
        else:
            skipped.add(voice_rows[0].id)
    return SpeakerTable(prompts, row_prompts, frozenset(skipped))


def folder_speakers(speakers_dir: str | Path, tokenize: Tokenize) -> SpeakerTable:
    """Every entry of a model folder's `speakers/`, tokenised once (the inference prompt, exactly)."""
    directory = Path(speakers_dir)
    try:
        texts = read_speakers_file(directory)
    except CheckpointError as exc:
        raise DatasetError(str(exc)) from exc
    prompts = {}
    for name, text in texts.items():
        wav = directory / f"{name}_prompt.wav"
        prompts[name] = SpeakerPrompt(text, tuple(int(i) for i in tokenize(wav)), wav)
    return SpeakerTable(prompts, music_entries=True)


def write_speakers(table: SpeakerTable, out_dir: str | Path) -> Path:
    """A `speakers/` folder (speakers_info.json + `{voice}_prompt.wav`) holding the table's references."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    info = {}
    for name, prompt in table.prompts.items():
        if prompt.audio is None:
            raise DatasetError(f"speaker {name!r} has no prompt wav to export")
        shutil.copyfile(prompt.audio, directory / f"{name}_prompt.wav")
        info[name] = prompt.text
    (directory / "speakers_info.json").write_text(json.dumps(info, ensure_ascii=False, indent=1) + "\n",
                                                  encoding="utf-8")
    return directory


def is_clone(row: DatasetRow) -> bool:
    return bool(row.prompt_text and row.prompt_audio)


def check_row(row: DatasetRow) -> None:
    """What the manifest reader does not refuse but training must: no audio, bad tags."""
    if not row.audio_tokens:
        raise DatasetError(f"row {row.id}: no audio tokens (nothing to learn)")
    for tag in row.tags:
        if tag not in KNOWN_TAGS:
            raise DatasetError(f"row {row.id}: unknown instruction tag {tag!r} (known: {', '.join(KNOWN_TAGS)})")
    if bool(row.prompt_text) != bool(row.prompt_audio):
        raise DatasetError(f"row {row.id}: a clone row needs both prompt_text and prompt_audio")


def build_example(
    tokenizer: StepTokenizer, row: DatasetRow, prompt: SpeakerPrompt, speaker: str | None
) -> TrainExample:
    """The TTS-3B prompt for `row` (speaker None: clone system prompt) + audio answer + stop."""
    check_row(row)
    text = tagged_text(row)
    ids = build_tts_prompt(tokenizer, text=text, prompt_text=prompt.text, prompt_audio_ids=prompt.lm_ids,
                           speaker=speaker)
    answer = [STEP1.audio_offset + t for t in row.audio_tokens] + list(STEP1.stop_ids)
    return TrainExample.of(row.id, ids + answer, len(ids))


@dataclass(frozen=True)
class ExampleSet:
    train: tuple[TrainExample, ...]
    eval: tuple[TrainExample, ...]
    speakers: SpeakerTable
    skipped: Mapping[str, int]  # reason -> rows

    @property
    def target_tokens(self) -> int:
        return sum(e.target_tokens for e in self.train)


def load_examples(
    dataset: str | Path,
    tokenizer: StepTokenizer,
    *,
    vocab_size: int,
    max_length: int,
    speakers: SpeakerTable | None = None,
    tokenize: Tokenize | None = None,
    eval_fraction: float = 0.05,
) -> ExampleSet:
    """Read and validate the whole dataset, build every example, and split held-out rows by id hash.

    Refuses (DatasetError): unreadable or invalid rows (via the manifest reader), a dataset with no rows,
    rows without audio tokens or with unknown tags, a model whose vocabulary lacks the audio ids.
    Rows longer than `max_length` are skipped and counted.
    """
    if vocab_size < STEP1.audio_offset + FLOW_VOCAB:
        raise DatasetError(f"the model's vocab_size {vocab_size} has no room for the audio ids "
                           f"{STEP1.audio_offset}..{STEP1.audio_offset + FLOW_VOCAB - 1}")
    if not 0.0 <= eval_fraction < 1.0:
        raise DatasetError(f"eval fraction must be in [0, 1), got {eval_fraction}")
    root = Path(dataset)
    rows = list(iter_rows(root))
    if not rows:
        raise DatasetError(f"{root}: the dataset has no rows")
    for row in rows:
        check_row(row)
    table = speakers or dataset_speakers(rows, root)
    by_audio = {row.audio: row for row in rows}
    train: list[TrainExample] = []
    held: list[TrainExample] = []
    skipped = {"single-row voice": len(table.skipped_rows), "too long": 0}
    for row in rows:
        if row.id in table.skipped_rows:
            continue
        if is_clone(row):
            example = build_example(tokenizer, row, resolve_clone_prompt(root, row, by_audio, tokenize), None)
        else:
            example = build_example(tokenizer, row, table.prompt_for(row, tagged_text(row)), row.voice)
        if len(example) > max_length:
            skipped["too long"] += 1
            continue
        (held if is_held_out(row.id, eval_fraction) else train).append(example)
    if not train:
        raise DatasetError(f"{root}: no trainable rows ({_describe(skipped)})")
    return ExampleSet(tuple(train), tuple(held), table, {k: v for k, v in skipped.items() if v})


def _row_prompt(row: DatasetRow, root: Path) -> SpeakerPrompt:
    return SpeakerPrompt(tagged_text(row), tuple(STEP1.audio_offset + t for t in row.audio_tokens), root / row.audio)


def resolve_clone_prompt(
    root: Path, row: DatasetRow, by_audio: Mapping[str, DatasetRow], tokenize: Tokenize | None
) -> SpeakerPrompt:
    assert row.prompt_text and row.prompt_audio
    source = by_audio.get(row.prompt_audio)
    if source is not None:
        return SpeakerPrompt(row.prompt_text, tuple(STEP1.audio_offset + t for t in source.audio_tokens))
    path = root / row.prompt_audio
    if not path.is_file():
        raise DatasetError(f"row {row.id}: prompt audio {path} is missing")
    if tokenize is None:
        raise DatasetError(f"row {row.id}: its prompt audio {row.prompt_audio} is not a dataset row; "
                           "pass the audio tokenizer (--model-path) to tokenise clone prompts")
    return SpeakerPrompt(row.prompt_text, tuple(int(i) for i in tokenize(path)), path)


def is_held_out(row_id: str, fraction: float) -> bool:
    return int(row_id[:8], 16) / 0x100000000 < fraction


def _describe(counts: Mapping[str, int]) -> str:
    parts = [f"{n} {reason}" for reason, n in counts.items() if n]
    return ", ".join(parts) or "none skipped"

