"""The TTS dataset format shared by `stepaudio data generate` (writer) and `stepaudio train tts` (reader).

```
DATASET/
  dataset.json              what made it: format, version, created, engine, tokenizer fingerprint, config
  manifest-00000.jsonl ...  accepted rows, one JSON object a line, `shard_size` rows a shard
  rejects.jsonl             rows the quality filter refused, each with its "reason"
  audio/<id[:2]>/<id>.wav   16-bit PCM wav as synthesised
```

Writes are crash-safe so a killed run resumes without duplicates or lost rows: an audio file is written
to a temporary name and renamed into place before its row is appended; every line is flushed and
fsynced; a torn last line is dropped on reopening; ids already present are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from stepaudio.audio.io import encode_audio
from stepaudio.errors import StepAudioError
from stepaudio.tokenizer.interleave import FLOW_VOCAB

FORMAT = "stepaudio-tts-dataset"
VERSION = 1
INFO_FILE = "dataset.json"
REJECTS_FILE = "rejects.jsonl"
AUDIO_DIR = "audio"
SHARD_PATTERN = re.compile(r"^manifest-(\d{5})\.jsonl$")
_ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")
_TMP_SUFFIX = ".tmp"


class DatasetError(StepAudioError, ValueError):
    """A dataset that cannot be read or extended: bad JSON, a missing audio file, an invalid row."""


def row_id(engine: str, voice: str, tags: Sequence[str], text: str) -> str:
    """Stable id of one synthesis request: the same request always maps to the same row."""
    key = json.dumps([engine, voice, list(tags), text], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def shard_name(index: int) -> str:
    return f"manifest-{index:05d}.jsonl"


def audio_relpath(rid: str) -> str:
    return f"{AUDIO_DIR}/{rid[:2]}/{rid}.wav"


@dataclass(frozen=True)
class DatasetRow:
    """One labelled utterance. `audio_tokens` are flow ids 0..5119 (vq02 i -> i, vq06 j -> 1024 + j)."""

    id: str
    text: str
    tags: tuple[str, ...]
    voice: str
    audio: str
    sample_rate: int
    duration_s: float
    audio_tokens: tuple[int, ...]
    engine: str
    asr_text: str | None = None
    cer: float | None = None
    prompt_text: str | None = None
    prompt_audio: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "text": self.text, "tags": list(self.tags), "voice": self.voice,
            "audio": self.audio, "sample_rate": self.sample_rate, "duration_s": self.duration_s,
            "audio_tokens": list(self.audio_tokens), "engine": self.engine,
        }
        for name in ("asr_text", "cer", "prompt_text", "prompt_audio"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def to_json(self) -> str:
        """One manifest line (without the newline)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetRow:
        """Validated row; any problem is a `ValueError` saying which field (the reader adds file:line)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a row must be a JSON object, not {type(data).__name__}")
        missing = [name for name in _REQUIRED if name not in data]
        if missing:
            raise ValueError(f"missing field(s): {', '.join(missing)}")
        rid = _typed(data, "id", str)
        if not _ID_PATTERN.match(rid):
            raise ValueError(f"id {rid!r} is not 16 lowercase hex digits")
        text = _typed(data, "text", str)
        if not text.strip():
            raise ValueError("empty text")
        tags = data["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ValueError("tags must be a list of strings")
        sample_rate = _typed(data, "sample_rate", int)
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        duration = float(_typed(data, "duration_s", (int, float)))
        if not np.isfinite(duration) or duration < 0:
            raise ValueError(f"duration_s must be a non-negative number, got {duration}")
        tokens = data["audio_tokens"]
        if not isinstance(tokens, list):
            raise ValueError("audio_tokens must be a list of integers")
        for index, token in enumerate(tokens):
            if not isinstance(token, int) or isinstance(token, bool) or not 0 <= token < FLOW_VOCAB:
                raise ValueError(f"audio token {token!r} at index {index} is outside 0..{FLOW_VOCAB - 1}")
        cer = data.get("cer")
        if cer is not None and (not isinstance(cer, (int, float)) or isinstance(cer, bool)):
            raise ValueError(f"cer must be a number, got {cer!r}")
        return cls(
            id=rid, text=text, tags=tuple(tags), voice=_typed(data, "voice", str),
            audio=_typed(data, "audio", str), sample_rate=sample_rate, duration_s=duration,
            audio_tokens=tuple(tokens), engine=_typed(data, "engine", str),
            asr_text=_optional_str(data, "asr_text"), cer=None if cer is None else float(cer),
            prompt_text=_optional_str(data, "prompt_text"), prompt_audio=_optional_str(data, "prompt_audio"),
        )

    @classmethod
    def from_json(cls, line: str) -> DatasetRow:
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"bad JSON ({exc.msg} at column {exc.colno})") from exc
        return cls.from_dict(data)


_REQUIRED = ("id", "text", "tags", "voice", "audio", "sample_rate", "duration_s", "audio_tokens", "engine")


def _typed(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = data[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        expected = kind.__name__ if isinstance(kind, type) else "number"
        raise ValueError(f"{name} must be a {expected}, got {value!r}")
    return value


def _optional_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


@dataclass(frozen=True)
class Reject:
    """A row the quality filter refused and why; stored as the row's fields plus "reason".

    Rejected audio is not tokenised, so a reject's `audio_tokens` may be empty (and its audio silent)."""

    row: DatasetRow
    reason: str

    def to_json(self) -> str:
        return json.dumps({**self.row.to_dict(), "reason": self.reason}, ensure_ascii=False,
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> Reject:
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"bad JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("reason"), str) or not data["reason"]:
            raise ValueError("a reject needs a non-empty string 'reason'")
        reason = data.pop("reason")
        return cls(row=DatasetRow.from_dict(data), reason=reason)


@dataclass(frozen=True)
class TokenizerInfo:
    name: str
    sha256: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetInfo:
    """The contents of dataset.json: how the dataset was made, so a resume can refuse a mismatch."""

    engine: str
    tokenizer: TokenizerInfo
    config: Mapping[str, Any] = field(default_factory=dict)
    created: str = ""
    format: str = FORMAT
    version: int = VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format, "version": self.version,
            "created": self.created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "engine": self.engine,
            "tokenizer": {"name": self.tokenizer.name, "sha256": dict(self.tokenizer.sha256)},
            "config": dict(self.config),
        }


def write_info(root: str | Path, info: DatasetInfo) -> Path:
    path = Path(root) / INFO_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, (json.dumps(info.to_dict(), ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    return path


def read_info(root: str | Path) -> DatasetInfo:
    path = Path(root) / INFO_FILE
    if not path.is_file():
        raise DatasetError(f"{path}: not found; is {Path(root)} a stepaudio dataset?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: bad JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DatasetError(f"{path}: format is not {FORMAT!r}")
    if data.get("version") != VERSION:
        raise DatasetError(f"{path}: version {data.get('version')!r} is not supported (expected {VERSION})")
    tokenizer = data.get("tokenizer") or {}
    if not isinstance(tokenizer, dict) or not isinstance(tokenizer.get("name"), str):
        raise DatasetError(f"{path}: 'tokenizer' must be an object with a 'name'")
    return DatasetInfo(
        engine=str(data.get("engine", "")),
        tokenizer=TokenizerInfo(tokenizer["name"], dict(tokenizer.get("sha256") or {})),
        config=dict(data.get("config") or {}), created=str(data.get("created", "")),
    )


def shard_paths(root: str | Path) -> list[Path]:
    """Manifest shards in order."""
    base = Path(root)
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if SHARD_PATTERN.match(p.name))


def iter_rows(root: str | Path, *, check_audio: bool = True) -> Iterator[DatasetRow]:
    """Every accepted row across all shards in order; any invalid line is a `DatasetError` naming it.

    With `check_audio`, each row's wav must exist and hold as many bytes as its header declares.
    """
    base = Path(root)
    if not (base / INFO_FILE).is_file() and not shard_paths(base):
        raise DatasetError(f"{base}: not a stepaudio dataset (no {INFO_FILE} and no manifest shards)")
    for shard in shard_paths(base):
        for lineno, line in _lines(shard):
            try:
                row = DatasetRow.from_json(line)
            except ValueError as exc:
                raise DatasetError(f"{shard}:{lineno}: {exc}") from exc
            if check_audio:
                problem = audio_problem(base / row.audio)
                if problem:
                    raise DatasetError(f"{shard}:{lineno}: row {row.id}: {problem}")
            yield row


def iter_rejects(root: str | Path) -> Iterator[Reject]:
    path = Path(root) / REJECTS_FILE
    if not path.is_file():
        return
    for lineno, line in _lines(path):
        try:
            yield Reject.from_json(line)
        except ValueError as exc:
            raise DatasetError(f"{path}:{lineno}: {exc}") from exc


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        raise DatasetError(
            f"{path}: the last line is incomplete (an interrupted write); "
            "resume the generation (stepaudio data generate --resume) to repair it"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 ({exc})") from exc
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield lineno, line


def audio_problem(path: Path) -> str | None:
    """Why the wav at `path` is unusable (missing, empty, truncated), or None when it is complete."""
    if not path.is_file():
        return f"audio file {path} is missing"
    size = path.stat().st_size
    with path.open("rb") as handle:
        header = handle.read(4096)
    if len(header) < 44 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return f"audio file {path} is not a complete WAV file ({size} bytes)"
    offset = 12
    while offset + 8 <= len(header):
        chunk, chunk_size = header[offset : offset + 4], int.from_bytes(header[offset + 4 : offset + 8], "little")
        if chunk == b"data":
            if offset + 8 + chunk_size > size:
                return f"audio file {path} is truncated ({size} bytes, header declares more)"
            return None
        offset += 8 + chunk_size + (chunk_size & 1)
    return f"audio file {path} has no data chunk"


@dataclass(frozen=True)
class ResumeState:
    """What an existing dataset already holds, as found (and repaired) when a writer opens it."""

    ids: frozenset[str]
    accepted: int
    rejected: int
    dropped_torn_lines: int


class DatasetWriter:
    """Appends audio, rows and rejects to a dataset directory; single-threaded (call from one thread)."""

    def __init__(self, root: str | Path, shard_size: int = 1000) -> None:
        if shard_size < 1:
            raise DatasetError(f"shard size must be at least 1, got {shard_size}")
        self.root = Path(root)
        self.shard_size = shard_size
        self.root.mkdir(parents=True, exist_ok=True)
        self.state = self._recover()
        self._ids = set(self.state.ids)
        shards = shard_paths(self.root)
        self._shard_index = len(shards) - 1 if shards else 0
        self._shard_rows = _count_lines(shards[-1]) if shards else 0

    def __contains__(self, rid: object) -> bool:
        return rid in self._ids

    def write_audio(self, rid: str, samples: np.ndarray, sample_rate: int) -> str:
        """Write the row's wav atomically; returns its path relative to the dataset."""
        relative = audio_relpath(rid)
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(target, encode_audio(samples, sample_rate, "wav"))
        return relative

    def append(self, row: DatasetRow) -> None:
        """Add an accepted row (its audio must already be written); an id already present is an error."""
        self._check_new(row)
        if self._shard_rows >= self.shard_size:
            self._shard_index += 1
            self._shard_rows = 0
        _append_line(self.root / shard_name(self._shard_index), row.to_json())
        self._shard_rows += 1
        self._ids.add(row.id)

    def reject(self, row: DatasetRow, reason: str) -> None:
        self._check_new(row)
        _append_line(self.root / REJECTS_FILE, Reject(row, reason).to_json())
        self._ids.add(row.id)

    def _check_new(self, row: DatasetRow) -> None:
        if row.id in self._ids:
            raise DatasetError(f"row {row.id} is already in {self.root}")
        problem = audio_problem(self.root / row.audio)
        if problem:
            raise DatasetError(f"cannot add row {row.id}: {problem}")

    def _recover(self) -> ResumeState:
        """Drop torn last lines and stray temporary files; collect the ids already present."""
        dropped = 0
        ids: set[str] = set()
        accepted = rejected = 0
        files = [*shard_paths(self.root), self.root / REJECTS_FILE]
        for path in files:
            if not path.is_file():
                continue
            dropped += _drop_torn_tail(path)
            for lineno, line in _lines(path):
                try:
                    rid = json.loads(line)["id"]
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise DatasetError(f"{path}:{lineno}: not a dataset row ({exc})") from exc
                if rid in ids:
                    raise DatasetError(f"{path}:{lineno}: duplicate id {rid}")
                ids.add(rid)
                if path.name == REJECTS_FILE:
                    rejected += 1
                else:
                    accepted += 1
        audio = self.root / AUDIO_DIR
        if audio.is_dir():
            for stray in audio.rglob(f"*{_TMP_SUFFIX}"):
                stray.unlink(missing_ok=True)
        return ResumeState(frozenset(ids), accepted, rejected, dropped)


def _count_lines(path: Path) -> int:
    return sum(1 for _ in _lines(path))


def _drop_torn_tail(path: Path) -> int:
    """Truncate an unterminated last line (a write cut by a kill); returns 1 when one was dropped."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with path.open("r+b") as handle:
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    return 1


def _append_line(path: Path, line: str) -> None:
    if "\n" in line:
        raise DatasetError("a manifest line cannot contain a newline")
    with path.open("ab") as handle:
        handle.write(line.encode("utf-8") + b"\n")
        handle.flush()
        os.fsync(handle.fileno())


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}{_TMP_SUFFIX}")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
