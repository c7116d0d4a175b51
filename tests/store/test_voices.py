from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stepaudio.audio.io import encode_audio
from stepaudio.errors import AudioError
from stepaudio.store.voices import (
    VoiceExistsError,
    VoiceNotFoundError,
    VoiceStore,
    VoiceStoreError,
    is_voice_id,
)


def tone(seconds: float = 1.0, rate: int = 16000, channels: int = 1) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    data = np.stack([mono] * channels, axis=1) if channels > 1 else mono
    return encode_audio(data, rate, "wav")


def test_add_normalises_and_resolves(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path, sample_rate=24000)
    voice = store.add("  Alice  ", tone(1.0, 16000, channels=2), " hello there ")
    assert is_voice_id(voice.id)
    assert voice.name == "Alice" and voice.transcript == "hello there"
    assert voice.audio_path == tmp_path.resolve() / "audio" / f"{voice.id}.wav"
    info = sf.info(voice.audio_path)
    assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
    assert abs(info.duration - 1.0) < 1e-3
    assert store.get(voice.id) == voice
    assert store.get("alice") == voice  # names are case-insensitive
    resolved = store.resolve("Alice")
    assert resolved.is_clone and resolved.prompt_audio == voice.audio_path and resolved.prompt_text == "hello there"


def test_survives_reopen_and_deletes(tmp_path: Path) -> None:
    with VoiceStore(tmp_path) as store:
        first = store.add("a", tone(), "one")
        second = store.add("b", tone(), "two")
    store = VoiceStore(tmp_path)
    assert [v.id for v in store.list()] == [first.id, second.id]
    assert store.delete("a") == first
    assert not first.audio_path.exists()
    with pytest.raises(VoiceNotFoundError):
        store.get(first.id)
    with pytest.raises(VoiceNotFoundError):
        store.delete(first.id)
    assert [v.name for v in store] == ["b"]


@pytest.mark.parametrize(
    "name",
    ["", "   ", "x" * 65, "a\x00b", "a\nb", "voice_0123456789abcdef01234567"],
)
def test_rejects_bad_names(tmp_path: Path, name: str) -> None:
    store = VoiceStore(tmp_path)
    with pytest.raises(VoiceStoreError):
        store.add(name, tone(), "text")
    assert store.list() == []
    assert list((tmp_path / "audio").iterdir()) == []


def test_names_that_look_like_paths_stay_names(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path)
    voice = store.add("../../etc/passwd", tone(), "text")
    assert voice.audio_path.parent == tmp_path.resolve() / "audio"
    assert store.get("../../etc/passwd") == voice
    with pytest.raises(VoiceNotFoundError):
        store.get("voice_" + "0" * 24)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio", "tmp", *sorted(
        p.name for p in tmp_path.iterdir() if p.name.startswith("voices.sqlite3"))]


def test_rejects_duplicates_and_bad_audio(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path, max_seconds=2.0, max_bytes=200_000)
    store.add("a", tone(), "one")
    with pytest.raises(VoiceExistsError):
        store.add("A", tone(), "two")
    with pytest.raises(VoiceStoreError, match="transcript"):
        store.add("b", tone(), "   ")
    with pytest.raises(VoiceStoreError, match="at least"):
        store.add("b", tone(0.1), "short")
    with pytest.raises(AudioError, match="longer than"):
        store.add("b", tone(3.0, 8000), "long")
    with pytest.raises(AudioError, match="larger than"):
        store.add("b", tone(1.9, 96000), "big")
    with pytest.raises(AudioError):
        store.add("b", b"RIFF\x00\x00garbage", "corrupt")
    assert [v.name for v in store.list()] == ["a"]
    assert len(list((tmp_path / "audio").iterdir())) == 1
    assert list((tmp_path / "tmp").iterdir()) == []


def test_open_cleans_leftovers_of_interrupted_writes(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path)
    kept = store.add("kept", tone(), "kept")
    gone = store.add("gone", tone(), "gone")
    store.close()
    (tmp_path / "tmp" / "voice_x.tmp").write_bytes(b"half a file")  # killed before the rename
    orphan = tmp_path / "audio" / ("voice_" + "a" * 24 + ".wav")  # killed after the rename, before the commit
    orphan.write_bytes(tone())
    gone.audio_path.unlink()  # a file lost behind the store's back
    store = VoiceStore(tmp_path)
    assert [v.id for v in store.list()] == [kept.id]
    assert not orphan.exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_malformed_row_is_never_a_path(tmp_path: Path) -> None:
    VoiceStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / "voices.sqlite3")
    db.execute("INSERT INTO voices (id, name, transcript, created_at, sample_rate, duration) "
               "VALUES ('../../x', 'evil', 't', 0, 24000, 1.0)")
    db.commit()
    db.close()
    store = VoiceStore(tmp_path)  # no file for the row: cleanup drops it
    assert store.list() == []


def test_designed_voices_are_blends_without_audio(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path)
    clone = store.add("clone", tone(), "hello")
    blend = store.add_blend("mix", "zh-yunjian*0.6+zh-xiaobei*0.4")
    assert blend.is_blend and blend.audio_path is None and not clone.is_blend
    voice = store.resolve("MIX")
    assert voice.name == "zh-yunjian*0.6+zh-xiaobei*0.4" and not voice.is_clone
    with pytest.raises(VoiceExistsError):
        store.add_blend("Clone", "zh-yunxi")
    for bad in ("", "x" * 600, "a\x00b"):
        with pytest.raises(VoiceStoreError):
            store.add_blend("other", bad)
    store.close()
    store = VoiceStore(tmp_path)  # reopening (cleanup) keeps a blend though it has no file
    assert [(v.name, v.kind) for v in store.list()] == [("clone", "clone"), ("mix", "blend")]
    assert store.delete("mix").id == blend.id and [v.name for v in store.list()] == ["clone"]


def test_a_store_from_before_blends_is_migrated_and_keeps_its_voices(tmp_path: Path) -> None:
    (tmp_path / "audio").mkdir()
    voice_id = "voice_" + "b" * 24
    (tmp_path / "audio" / f"{voice_id}.wav").write_bytes(tone())
    db = sqlite3.connect(tmp_path / "voices.sqlite3")
    db.execute("CREATE TABLE voices (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE, "
               "transcript TEXT NOT NULL, created_at INTEGER NOT NULL, sample_rate INTEGER NOT NULL, "
               "duration REAL NOT NULL)")
    db.execute("INSERT INTO voices VALUES (?, 'old', 'hello there', 1, 16000, 1.0)", (voice_id,))
    db.commit()
    db.close()
    store = VoiceStore(tmp_path)
    old = store.get("old")
    assert old.kind == "clone" and old.audio_path is not None and old.audio_path.is_file()
    assert store.resolve("old").is_clone
    assert store.add_blend("new", "ja-alpha").is_blend


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from stepaudio.audio.io import encode_audio
    from stepaudio.store.voices import VoiceStore

    store = VoiceStore(sys.argv[1], sample_rate=48000, max_seconds=60.0, max_bytes=1 << 30)
    rate = 48000
    t = np.arange(20 * rate) / rate
    data = encode_audio((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, "wav")
    for i in range(10_000):
        store.add(f"voice {i}", data, f"transcript {i}")
        if i == 1:
            print("ready", flush=True)
    """
)


def test_kill_during_writes_leaves_store_consistent(tmp_path: Path) -> None:
    """SIGKILL a process while it writes voices in a loop; the reopened store holds only complete voices."""
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.37)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    store = VoiceStore(tmp_path)
    voices = store.list()
    assert len(voices) >= 2
    for voice in voices:
        info = sf.info(voice.audio_path)
        assert info.samplerate == 48000 and abs(info.duration - 20.0) < 1e-6
    assert sorted(p.name for p in (tmp_path / "audio").iterdir()) == sorted(f"{v.id}.wav" for v in voices)
    assert list((tmp_path / "tmp").iterdir()) == []
    store.add("after", tone(), "still works")


_CRASHER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from stepaudio.audio.io import encode_audio
    from stepaudio.store import voices

    store = voices.VoiceStore(sys.argv[1])
    data = encode_audio(np.full(16000, 0.1, dtype=np.float32), 16000, "wav")
    store.add("survivor", data, "fine")

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    phase = sys.argv[2]
    if phase == "before-rename":
        voices.os.replace = die  # the wav is complete in tmp/, not yet in audio/
        store.add("victim", data, "lost")
    elif phase == "before-commit":
        voices._fsync_dir = die  # the wav is in audio/, its row is not committed
        store.add("victim", data, "lost")
    elif phase == "mid-delete":
        voice = store.get("survivor")
        voices.Path.unlink = die  # the row is deleted, the file is still there
        store.delete("survivor")
    """
)


@pytest.mark.parametrize("phase", ["before-rename", "before-commit", "mid-delete"])
def test_kill_at_each_step_of_a_write(tmp_path: Path, phase: str) -> None:
    result = subprocess.run([sys.executable, "-c", _CRASHER, str(tmp_path), phase], capture_output=True)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    leftovers = list((tmp_path / "tmp").iterdir()) + list((tmp_path / "audio").iterdir())
    assert len(leftovers) == (1 if phase == "mid-delete" else 2)  # the survivor's wav and the crash's leftover
    store = VoiceStore(tmp_path)
    expected = [] if phase == "mid-delete" else ["survivor"]
    assert [v.name for v in store.list()] == expected
    assert sorted(p.name for p in (tmp_path / "audio").iterdir()) == sorted(f"{v.id}.wav" for v in store.list())
    assert list((tmp_path / "tmp").iterdir()) == []


def test_voice_count_is_capped(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path, max_voices=2)
    store.add("a", tone(), "a")
    store.add("b", tone(), "b")
    assert store.count() == 2
    with pytest.raises(VoiceStoreError, match="delete one"):
        store.add("c", tone(), "c")
    store.delete("a")
    store.add("c", tone(), "c")
