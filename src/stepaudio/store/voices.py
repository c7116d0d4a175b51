"""Registered voices: clones (a row in SQLite and its prompt audio as a wav file beside it) and designed voices
(a row holding a blend of the engine's built-in voices, e.g. `zh-yunjian*0.6+zh-xiaobei*0.4`; no audio).

Names and ids never become paths: ids are generated here and checked against a strict pattern, and a
file's path is always `<root>/audio/<id>.wav`. A voice is written in an order that survives a kill at any
point: the wav goes to a temporary file, is fsynced and renamed into place, and only then is the row
committed; a delete commits the row removal before unlinking the file. Opening a store removes what an
interrupted write or delete left behind (temporary files, files with no row, rows with no file), so the
store is meant to be owned by one process at a time. A store made before designed voices existed gains the
`kind` and `blend` columns when opened; its rows stay clones.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepaudio.audio.io import Audio, AudioSource, encode_audio, load_audio
from stepaudio.engines.base import Voice
from stepaudio.errors import StepAudioError

VOICE_ID_PATTERN = re.compile(r"voice_[0-9a-f]{24}")
MAX_NAME_CHARS = 64
MAX_TRANSCRIPT_CHARS = 2000
NAME_REFUSED = frozenset({"Cc", "Cf", "Cs"})  # control, format and surrogate characters: not shown, or not text

_SCHEMA = """
CREATE TABLE IF NOT EXISTS voices (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    transcript TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    sample_rate INTEGER NOT NULL,
    duration REAL NOT NULL,
    kind TEXT NOT NULL DEFAULT 'clone',
    blend TEXT
)
"""
_COLUMNS = "id, name, transcript, created_at, sample_rate, duration, kind, blend"
# columns added since the first schema, for stores written before them
_MIGRATIONS = (("kind", "ALTER TABLE voices ADD COLUMN kind TEXT NOT NULL DEFAULT 'clone'"),
               ("blend", "ALTER TABLE voices ADD COLUMN blend TEXT"))
MAX_BLEND_CHARS = 512


class VoiceStoreError(StepAudioError, ValueError):
    """A request the store refuses: a bad name or transcript, unusable audio, a duplicate name."""


class VoiceNotFoundError(StepAudioError, LookupError):
    """No registered voice has this id or name."""


class VoiceExistsError(VoiceStoreError):
    """Another voice already has this name (names are unique, case-insensitively)."""


@dataclass(frozen=True)
class StoredVoice:
    """A clone (`audio_path` and `transcript`) or a designed voice (`blend`, no audio: `audio_path` None)."""

    id: str
    name: str
    transcript: str
    created_at: int
    sample_rate: int
    duration: float
    audio_path: Path | None
    kind: str = "clone"  # "clone" or "blend"
    blend: str | None = None

    @property
    def is_blend(self) -> bool:
        return self.kind == "blend"

    def as_voice(self) -> Voice:
        """A blend is a built-in voice whose name is its formula: engines that blend read it like any voice name."""
        if self.blend is not None:
            return Voice(name=self.blend)
        return Voice(name=self.name, prompt_audio=self.audio_path, prompt_text=self.transcript)


def is_voice_id(value: str) -> bool:
    return VOICE_ID_PATTERN.fullmatch(value) is not None


def validate_name(name: str) -> str:
    """A display name: 1-64 printable characters, no control characters, not shaped like an id."""
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned or len(cleaned) > MAX_NAME_CHARS:
        raise VoiceStoreError(f"a voice name must have 1 to {MAX_NAME_CHARS} characters")
    if any(unicodedata.category(ch) in NAME_REFUSED for ch in cleaned):
        raise VoiceStoreError("a voice name must not contain control or format characters")
    if is_voice_id(cleaned):
        raise VoiceStoreError("a voice name must not look like a voice id (voice_...)")
    return cleaned


def validate_transcript(text: str) -> str:
    cleaned = text.strip()
    if not cleaned:
        raise VoiceStoreError("a cloned voice needs the exact transcript of its prompt audio")
    if len(cleaned) > MAX_TRANSCRIPT_CHARS:
        raise VoiceStoreError(f"the transcript is longer than {MAX_TRANSCRIPT_CHARS} characters")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in cleaned):
        raise VoiceStoreError("the transcript must not contain control characters")
    return cleaned


class VoiceStore:
    """Voices under `root`: `voices.sqlite3`, `audio/<id>.wav`, `tmp/` for writes in progress."""

    def __init__(
        self,
        root: str | Path,
        *,
        sample_rate: int = 24000,
        min_seconds: float = 0.5,
        max_seconds: float = 30.0,
        max_bytes: int = 10 * 1024 * 1024,
        max_voices: int = 1000,
    ) -> None:
        self.root = Path(root).resolve()
        self.sample_rate = sample_rate
        self.min_seconds = min_seconds
        self.max_seconds = max_seconds
        self.max_bytes = max_bytes
        self.max_voices = max_voices
        self._audio_dir = self.root / "audio"
        self._tmp_dir = self.root / "tmp"
        for directory in (self.root, self._audio_dir, self._tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / "voices.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self._migrate()
        self.cleanup()

    # -- reading -------------------------------------------------------------------------------------------

    def list(self) -> list[StoredVoice]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM voices ORDER BY created_at, rowid").fetchall()
        return [self._record(row) for row in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM voices").fetchone()[0])

    def get(self, key: str) -> StoredVoice:
        """The voice whose id, or else whose name (case-insensitive), is `key`."""
        column = "id" if is_voice_id(key) else "name"
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM voices WHERE {column} = ?",
                (key.strip() if column == "name" else key,),
            ).fetchone()
        if row is None:
            raise VoiceNotFoundError(f"no registered voice {key!r}")
        return self._record(row)

    def find(self, key: str) -> StoredVoice | None:
        try:
            return self.get(key)
        except VoiceNotFoundError:
            return None

    def resolve(self, key: str) -> Voice:
        return self.get(key).as_voice()

    # -- writing -------------------------------------------------------------------------------------------

    def add(self, name: str, audio: AudioSource, transcript: str) -> StoredVoice:
        """Normalise `audio` (mono, `sample_rate`, 16-bit wav), write it atomically, then commit its row."""
        clean_name = validate_name(name)
        clean_text = validate_transcript(transcript)
        decoded = load_audio(audio, sample_rate=self.sample_rate, max_seconds=self.max_seconds,
                             max_bytes=self.max_bytes)
        if decoded.duration < self.min_seconds:
            raise VoiceStoreError(
                f"the prompt audio lasts {decoded.duration:.2f} s; at least {self.min_seconds:g} s is needed"
            )
        self._check_room(clean_name)
        voice_id = "voice_" + secrets.token_hex(12)
        final = self._audio_dir / f"{voice_id}.wav"
        self._write_atomic(final, decoded)
        record = (voice_id, clean_name, clean_text, int(time.time()), decoded.sample_rate, decoded.duration,
                  "clone", None)
        try:
            with self._lock:
                self._db.execute(f"INSERT INTO voices ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", record)
        except sqlite3.IntegrityError as exc:
            final.unlink(missing_ok=True)
            raise VoiceExistsError(f"a voice named {clean_name!r} already exists") from exc
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        return self._record(record)

    def add_blend(self, name: str, blend: str) -> StoredVoice:
        """A designed voice: `blend` is a formula the engine checked (`zh-yunjian*0.6+zh-xiaobei*0.4`)."""
        clean_name = validate_name(name)
        formula = blend.strip()
        if not formula or len(formula) > MAX_BLEND_CHARS or any(unicodedata.category(ch)[0] == "C" for ch in formula):
            raise VoiceStoreError(f"a voice blend must be 1 to {MAX_BLEND_CHARS} printable characters")
        self._check_room(clean_name)
        record = ("voice_" + secrets.token_hex(12), clean_name, "", int(time.time()), 0, 0.0, "blend", formula)
        try:
            with self._lock:
                self._db.execute(f"INSERT INTO voices ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", record)
        except sqlite3.IntegrityError as exc:
            raise VoiceExistsError(f"a voice named {clean_name!r} already exists") from exc
        return self._record(record)

    def delete(self, key: str) -> StoredVoice:
        """Remove the row first, then the file: a kill in between leaves only an orphan file for cleanup."""
        voice = self.get(key)
        with self._lock:
            self._db.execute("DELETE FROM voices WHERE id = ?", (voice.id,))
        if voice.audio_path is not None:
            voice.audio_path.unlink(missing_ok=True)
        return voice

    def cleanup(self) -> int:
        """Remove leftovers of interrupted writes and deletes; returns how many things were removed."""
        removed = 0
        for leftover in self._tmp_dir.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()
                removed += 1
        with self._lock:
            ids = {row[0] for row in self._db.execute("SELECT id FROM voices WHERE kind = 'clone'")}
        for file in self._audio_dir.iterdir():
            if not (file.suffix == ".wav" and file.stem in ids):
                with contextlib.suppress(OSError):
                    file.unlink()
                    removed += 1
        missing = [voice_id for voice_id in ids if not (self._audio_dir / f"{voice_id}.wav").is_file()]
        if missing:
            with self._lock:
                self._db.executemany("DELETE FROM voices WHERE id = ?", [(v,) for v in missing])
            removed += len(missing)
        return removed

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> VoiceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[StoredVoice]:
        return iter(self.list())

    # -- internals -----------------------------------------------------------------------------------------

    def _migrate(self) -> None:
        """Add the columns a store written by an older version lacks (its rows are clones)."""
        with self._lock:
            present = {row[1] for row in self._db.execute("PRAGMA table_info(voices)")}
            for column, statement in _MIGRATIONS:
                if column not in present:
                    self._db.execute(statement)

    def _check_room(self, name: str) -> None:
        if self.find(name) is not None:
            raise VoiceExistsError(f"a voice named {name!r} already exists")
        if self.count() >= self.max_voices:
            raise VoiceStoreError(f"the store already holds {self.max_voices} voices; delete one first")

    def _record(self, row: tuple[Any, ...]) -> StoredVoice:
        voice_id, name, transcript, created_at, sample_rate, duration, kind, blend = row
        if not is_voice_id(voice_id):  # a row written by something else: never turn it into a path
            raise VoiceStoreError(f"the store holds a malformed voice id {voice_id!r}")
        audio = None if kind == "blend" else self._audio_dir / f"{voice_id}.wav"
        return StoredVoice(voice_id, name, transcript, int(created_at), int(sample_rate), float(duration), audio,
                           kind, blend)

    def _write_atomic(self, final: Path, audio: Audio) -> None:
        data = encode_audio(audio.samples, audio.sample_rate, "wav")
        tmp = self._tmp_dir / f"{final.stem}.{secrets.token_hex(4)}.tmp"
        try:
            with tmp.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self._audio_dir)


def _fsync_dir(path: Path) -> None:
    """Make a rename durable: fsync the directory (not possible on every platform)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
