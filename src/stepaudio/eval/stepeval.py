"""Multi-turn chat evaluation data: the StepEval-Audio-360 release layout, or a local JSONL of conversations.

StepEval-Audio-360 (Hugging Face `stepfun-ai/StepEval-Audio-360`, 137 multi-turn prompts) ships as
`data/test-00000-of-00001.parquet` plus `audios.tar.gz`. Each row has `conversation_id`, `category`
(role-playing, logical reasoning, creativity, singing/rap, voice instruction following, language ability,
gaming, speech emotion control, voice understanding) and `conversation`: a list of turns with `role`,
`text` and `audio_filename` (a file of the decompressed `audios/` folder, or null for a text-only turn).

The local JSONL takes one conversation per line, in the same shape or with shorter names:
`{"id": "c1", "category": "qa", "turns": [{"role": "user", "text": "...", "audio": "q1.wav"},
{"role": "assistant", "text": "..."}, ...]}`; relative audio paths are relative to the file. A `.json`
file holding a list of such objects (e.g. the parquet exported by pandas) is read the same way.
Everything is checked on load, so a bad file fails at once with the line and field named.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepaudio.errors import MissingExtraError, StepAudioError

ROLES = ("system", "user", "assistant")
AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a")


class DatasetError(StepAudioError, ValueError):
    """A dataset folder or file that cannot be read as conversations; the message names the place."""


@dataclass(frozen=True)
class Turn:
    """One turn: its text (for a spoken turn the transcription, when the dataset has one) and its audio."""

    role: str
    text: str = ""
    audio: Path | None = None


@dataclass(frozen=True)
class Conversation:
    id: str
    category: str
    turns: tuple[Turn, ...]

    @property
    def user_turns(self) -> int:
        return sum(1 for t in self.turns if t.role == "user")


def load_conversations(path: str | Path, *, check_audio: bool = True) -> list[Conversation]:
    """A StepEval-Audio-360 folder (or its parquet file), a JSONL file or a JSON list of conversations."""
    source = Path(path)
    if source.is_dir():
        return load_stepeval360(source, check_audio=check_audio)
    if not source.is_file():
        raise DatasetError(f"{source}: no such file or folder")
    suffix = source.suffix.lower()
    if suffix == ".parquet":
        return _finish(_parquet_records(source), source, _AudioIndex(source.parent), check_audio)
    if suffix == ".jsonl":
        return _finish(_jsonl_records(source), source, _AudioIndex(source.parent), check_audio)
    if suffix == ".json":
        return _finish(_json_records(source), source, _AudioIndex(source.parent), check_audio)
    raise DatasetError(f"{source}: expected a folder, .parquet, .jsonl or .json file, not {suffix or 'no suffix'!r}")


def load_stepeval360(folder: str | Path, *, check_audio: bool = True) -> list[Conversation]:
    """The release folder: `data/*.parquet` (or any `*.jsonl` / `*.json` export) and the `audios/` folder."""
    root = Path(folder)
    files = sorted((root / "data").glob("*.parquet")) or sorted(root.glob("*.parquet"))
    reader = _parquet_records
    if not files:
        files = sorted(root.glob("*.jsonl")) or sorted((root / "data").glob("*.jsonl"))
        reader = _jsonl_records
    if not files:
        raise DatasetError(f"{root}: no data/*.parquet (StepEval-Audio-360 layout) or *.jsonl file found")
    if check_audio and not any((root / name).is_dir() for name in ("audios", "audio", "wavs")):
        tarball = root / "audios.tar.gz"
        hint = f"decompress it first: tar -xzf {tarball} -C {root}" if tarball.is_file() else "download audios.tar.gz"
        raise DatasetError(f"{root}: no audios/ folder ({hint}); or pass check_audio=False for text only")
    index = _AudioIndex(root)
    conversations: list[Conversation] = []
    for file in files:
        conversations += _finish(reader(file), file, index, check_audio)
    return conversations


def select(conversations: Sequence[Conversation], categories: Iterable[str] = (), limit: int | None = None
           ) -> list[Conversation]:
    """The conversations of the given categories (case-insensitive; all when empty), at most `limit`."""
    wanted = {c.strip().lower() for c in categories if c.strip()}
    chosen = [c for c in conversations if not wanted or c.category.lower() in wanted]
    if wanted and not chosen:
        known = sorted({c.category for c in conversations})
        raise DatasetError(f"no conversation has category {sorted(wanted)}; the data has {known}")
    return chosen[:limit] if limit is not None else chosen


# Reading --------------------------------------------------------------------------------------------------


def _parquet_records(file: Path) -> list[tuple[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingExtraError("eval", "pyarrow") from exc
    try:
        rows = pq.read_table(file).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DatasetError(f"{file}: not a readable parquet file ({exc})") from exc
    return [(f"{file.name} row {i + 1}", row) for i, row in enumerate(rows)]


def _jsonl_records(file: Path) -> list[tuple[str, Any]]:
    records = []
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{file}: not UTF-8 text ({exc})") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append((f"{file.name} line {number}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{file} line {number}: not valid JSON ({exc.msg})") from exc
    return records


def _json_records(file: Path) -> list[tuple[str, Any]]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{file}: not valid JSON ({exc})") from exc
    if isinstance(data, Mapping) and isinstance(data.get("conversations"), list):
        data = data["conversations"]
    if not isinstance(data, list):
        raise DatasetError(f"{file}: expected a list of conversations")
    return [(f"{file.name} item {i + 1}", item) for i, item in enumerate(data)]


class _AudioIndex:
    """Finds a turn's audio: as given, under the root or its audio folders, else by file name anywhere below."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._by_name: dict[str, Path] | None = None

    def find(self, name: str) -> Path | None:
        given = Path(name)
        candidates = [given] if given.is_absolute() else [self.root / given] + [
            self.root / folder / given for folder in ("audios", "audio", "wavs")]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        if self._by_name is None:
            self._by_name = {p.name: p for p in sorted(self.root.rglob("*")) if p.suffix.lower() in AUDIO_SUFFIXES}
        return self._by_name.get(given.name)


def _finish(records: list[tuple[str, Any]], source: Path, index: _AudioIndex, check_audio: bool
            ) -> list[Conversation]:
    conversations = [_conversation(where, record, index, check_audio) for where, record in records]
    if not conversations:
        raise DatasetError(f"{source}: no conversations")
    seen: dict[str, str] = {}
    for conv, (where, _) in zip(conversations, records, strict=True):
        if conv.id in seen:
            raise DatasetError(f"{where}: conversation id {conv.id!r} repeats ({seen[conv.id]})")
        seen[conv.id] = where
    return conversations


def _conversation(where: str, record: Any, index: _AudioIndex, check_audio: bool) -> Conversation:
    if not isinstance(record, Mapping):
        raise DatasetError(f"{where}: expected an object, got {type(record).__name__}")
    ident = record.get("conversation_id", record.get("id"))
    if ident is None or str(ident).strip() == "":
        raise DatasetError(f"{where}: missing 'conversation_id' (or 'id')")
    raw_turns = record.get("conversation", record.get("turns"))
    if isinstance(raw_turns, str):  # some exports keep the list as JSON text
        try:
            raw_turns = json.loads(raw_turns)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: 'conversation' is text but not JSON ({exc.msg})") from exc
    if not isinstance(raw_turns, list) or not raw_turns:
        raise DatasetError(f"{where}: 'conversation' (or 'turns') must be a non-empty list of turns")
    turns = tuple(_turn(f"{where} turn {i + 1}", t, index, check_audio) for i, t in enumerate(raw_turns))
    if not any(t.role == "user" for t in turns):
        raise DatasetError(f"{where}: no user turn to answer")
    category = record.get("category") or "uncategorised"
    return Conversation(str(ident), str(category), turns)


def _turn(where: str, raw: Any, index: _AudioIndex, check_audio: bool) -> Turn:
    if not isinstance(raw, Mapping):
        raise DatasetError(f"{where}: expected an object with 'role' and 'text'")
    role = str(raw.get("role", "")).strip().lower()
    if role == "human":
        role = "user"
    if role not in ROLES:
        raise DatasetError(f"{where}: role {raw.get('role')!r} is not one of {', '.join(ROLES)}")
    text = raw.get("text", raw.get("content")) or ""
    if not isinstance(text, str):
        raise DatasetError(f"{where}: 'text' must be a string")
    audio_name = raw.get("audio_filename", raw.get("audio"))
    audio: Path | None = None
    if audio_name not in (None, ""):
        if not isinstance(audio_name, str):
            raise DatasetError(f"{where}: 'audio_filename' must be a file name")
        found = index.find(audio_name)
        if found is None and check_audio:
            raise DatasetError(f"{where}: audio file {audio_name!r} not found under {index.root}")
        audio = found if found is not None else Path(audio_name)
    if role == "user" and not text.strip() and audio is None:
        raise DatasetError(f"{where}: a user turn needs 'text' or an audio file")
    return Turn(role, text.strip(), audio)
