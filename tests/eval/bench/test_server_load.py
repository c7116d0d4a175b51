"""`stepaudio bench server-load`: the recordings and where their speech ends, the session driver against an
in-process server (end of speech -> first audio and the reply RTF per turn), the sweep over session counts and
variants with the CPU named; a child server that cannot start is a clear error; with the lite engine (slow) the
incremental recognition is compared with the one-pass recognition in one run."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from stepaudio.cli.main import main
from stepaudio.engines.base import (
    AudioChunk,
    CancelToken,
    Engine,
    SpeechInstructions,
    Transcript,
    Voice,
)
from stepaudio.eval.bench.server_load import (
    LIBRIVOX,
    RATE,
    Recording,
    cpu_seconds,
    drive,
    load_recordings,
    machine_info,
    speech_end,
)
from stepaudio.testing.fakes import ScriptedChat

QUESTION = Path(__file__).resolve().parents[3] / "examples" / "question_capital.wav"


def test_speech_ends_at_the_last_voiced_frame_not_at_the_end_of_the_file() -> None:
    t = np.arange(int(1.5 * RATE)) / RATE
    samples = np.concatenate([0.3 * np.sin(2 * np.pi * 200 * t), np.full(RATE, 1e-4)]).astype(np.float32)
    assert speech_end(samples, RATE) == pytest.approx(1.5, abs=0.021)
    quiet_tail = samples.copy()
    quiet_tail[int(2.0 * RATE):] = 0.005  # 36 dB under the tone: still silence
    assert speech_end(quiet_tail, RATE) == pytest.approx(1.5, abs=0.021)


def test_the_default_recordings_are_the_librivox_sentences() -> None:
    if not LIBRIVOX.is_dir():
        pytest.skip("real recordings absent: apt-get install pocketsphinx-testdata")
    recordings = load_recordings()
    assert [r.name[-4:] for r in recordings] == ["0870", "0880", "0890", "0920", "0930"]
    for recording in recordings:
        duration = recording.samples.size / RATE
        assert 2.5 < recording.speech_end_s <= duration < 7.5


def test_cpu_seconds_count_this_process_work() -> None:
    before = cpu_seconds(os.getpid())
    assert before is not None and before > 0
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        sum(range(10_000))
    after = cpu_seconds(os.getpid())
    assert after is not None and after - before >= 0.2
    assert cpu_seconds(2**22 + 7) is None  # no such process


def test_the_cpu_is_named() -> None:
    info = machine_info()
    assert info["cpu"] and info["cores"] >= 1 and info["cpu_count"] >= info["cores"]


class _Heard:
    def transcribe(self, audio: object, language: str | None = None) -> Transcript:
        return Transcript("hello")


class _Tone:
    sample_rate = RATE

    def voices(self) -> list[str]:
        return ["tone"]

    def synthesize(self, text: str, voice: Voice | str | None = None, instructions: SpeechInstructions | None = None,
                   cancel: CancelToken | None = None) -> Iterator[AudioChunk]:
        t = np.arange(RATE // 2) / RATE
        yield AudioChunk((0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), RATE, is_last=True)


def test_sessions_say_recordings_and_every_reply_is_timed(tmp_path: Path) -> None:
    """Two sessions, one turn each, against a server in this process with an instant engine: both answered, a
    latency and an RTF per turn (0.5 s of reply audio each), no error."""
    pytest.importorskip("websockets")
    pytest.importorskip("faster_whisper", reason="the server's VAD is the packaged Silero")
    from stepaudio.server.inprocess import InProcessServer

    if not LIBRIVOX.is_dir():
        pytest.skip("real recordings absent: apt-get install pocketsphinx-testdata")
    recordings = [r for r in load_recordings() if r.name.endswith(("0880", "0930"))]
    engine = Engine("instant", _Heard(), ScriptedChat(["Hi there."]), _Tone())  # type: ignore[arg-type]
    with InProcessServer(engine, tmp_path, sessions=2) as url:
        report = asyncio.run(drive(url, recordings, sessions=2, seconds=None, turn_timeout=20.0, api_key=None,
                                   turns=1))
    assert report.errors == 0, report.error_samples
    assert (report.sessions, report.turns, report.answered) == (2, 2, 2)
    assert report.first_audio_p50_ms is not None and report.first_audio_p50_ms > 0
    assert report.rtf_p50 is not None and report.rtf_p50 > 0


def test_a_clip_without_a_name_is_one_recording() -> None:
    t = np.arange(RATE) / RATE
    clip = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    assert Recording("question", clip, speech_end(clip, RATE)).speech_end_s == pytest.approx(1.0)


def test_a_server_that_cannot_start_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("soxr")
    code = main(["bench", "server-load", "--engine", "no-such-engine", "--wav", str(QUESTION), "--sessions", "1"])
    assert code == 2
    assert "stepaudio serve exited with code 2 before listening" in capsys.readouterr().err


def test_session_counts_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "server-load", "--sessions", "0", "--wav", str(QUESTION)]) == 2
    assert "--sessions takes positive numbers" in capsys.readouterr().err


@pytest.mark.slow
def test_lite_sessions_with_and_without_incremental_recognition(tmp_path: Path) -> None:
    pytest.importorskip("websockets")
    pytest.importorskip("faster_whisper")
    out = tmp_path / "load.json"
    code = main(["bench", "server-load", "--sessions", "1,2", "--turns", "1", "-O", "chat_model=smollm2",
                 "-O", "max_new_tokens=16", "--variant", "asr_stream=off", "--variant", "asr_stream=on",
                 "--json", str(out)])
    report = json.loads(out.read_text())
    assert code == 0, [run["error_samples"] for run in report["runs"]]
    assert report["cpu"] and report["cores"] >= 1
    runs = report["runs"]
    assert [(run["variant"], run["sessions"]) for run in runs] == [
        ("asr_stream=off", 1), ("asr_stream=off", 2), ("asr_stream=on", 1), ("asr_stream=on", 2)]
    for run in runs:
        assert run["turns"] == run["answered"] == run["sessions"]
        assert run["first_audio_p50_ms"] > 0 and run["rtf_p50"] > 0 and len(run["load_before"]) == 3
        assert run["rss_start_mb"] is not None and run["rss_peak_mb"] >= run["rss_start_mb"] > 50
        assert run["cpu_s"] > 0 and run["cpu_s_per_turn"] == run["cpu_s"] / run["answered"]
        assert 0 < run["cores_busy"] <= report["cores"] + 0.5  # a process cannot keep more cores busy
