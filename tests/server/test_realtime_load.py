"""Load on /v1/realtime (the `server-load` benchmark's client, short): eight sessions streaming speech at real
time against the tiny engine must all be answered with no error event and no dropped connection, and the
server's memory must stay bounded. Marked slow."""

from __future__ import annotations

import asyncio
import os
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr

from stepaudio.eval.bench.server_load import RATE, drive
from stepaudio.server.inprocess import InProcessServer

pytest.importorskip("websockets", reason="uvicorn needs the websockets package for WebSockets")
pytest.importorskip("faster_whisper", reason="the load test uses the packaged Silero VAD")
QUESTION = Path(__file__).resolve().parents[2] / "examples" / "question_capital.wav"


@pytest.mark.slow
def test_eight_sessions_stream_without_errors(make_engine: Any, tmp_path: Path) -> None:
    samples, rate = sf.read(QUESTION, dtype="float32")
    question = soxr.resample(samples, rate, RATE).astype(np.float32)
    engine = make_engine(chat_delay=0.02)
    for part, name in ((engine.transcriber, "heard"), (engine.chat, "seen"), (engine.synthesizer, "calls")):
        setattr(part, name, deque(maxlen=8))  # the tiny engine records its calls: keep that out of the memory bound
    with InProcessServer(engine, tmp_path, sessions=8) as url:
        report = asyncio.run(drive(url, question, sessions=8, seconds=12.0, turn_timeout=20.0, api_key=None,
                                   rss_pid=os.getpid()))
    assert report.errors == 0, report.error_samples
    assert report.turns >= 8 and report.answered >= report.turns - 8  # the last turn may end with the run
    assert report.first_audio_p50_ms is not None
    assert report.rss_peak_mb is not None and report.rss_start_mb is not None
    assert report.rss_peak_mb - report.rss_start_mb < 300  # bounded (plateaus near +95 MB: VAD arenas, threads)
