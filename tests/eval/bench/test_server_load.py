"""`stepaudio bench server-load` starts `stepaudio serve` as a child process: a child that dies before it
listens is a clear error; with the lite engine (slow) two sessions are answered and the child's memory is
reported. The session driver itself is exercised against the tiny engine in tests/server/test_realtime_load.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepaudio.cli.main import main

QUESTION = Path(__file__).resolve().parents[3] / "examples" / "question_capital.wav"


def test_a_server_that_cannot_start_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("soxr")
    code = main(["bench", "server-load", "--engine", "no-such-engine", "--wav", str(QUESTION), "--seconds", "1"])
    assert code == 2
    assert "stepaudio serve exited with code 2 before listening" in capsys.readouterr().err


@pytest.mark.slow
def test_two_lite_sessions_against_a_served_engine(tmp_path: Path) -> None:
    pytest.importorskip("websockets")
    pytest.importorskip("faster_whisper")
    out = tmp_path / "load.json"
    code = main(["bench", "server-load", "--sessions", "2", "--seconds", "8", "--wav", str(QUESTION),
                 "-O", "chat_model=smollm2", "-O", "max_new_tokens=16", "--json", str(out)])
    report = json.loads(out.read_text())
    assert code == 0, report["error_samples"]
    assert report["turns"] >= 2 and report["answered"] >= 1
    assert report["rss_start_mb"] is not None and report["rss_peak_mb"] >= report["rss_start_mb"] > 50
