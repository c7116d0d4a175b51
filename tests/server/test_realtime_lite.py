"""/v1/realtime with real models: the lite engine (Whisper, SmolLM2, Piper) and the packaged Silero VAD behind a
live server, driven by the official `openai` realtime client streaming a spoken question at real time.
Marked slow (tens of seconds on the shared machine): run with `-m slow`."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr

from stepaudio.engines.base import Engine
from stepaudio.errors import StepAudioError
from stepaudio.server.realtime_ws import realtime_mount
from stepaudio.server.settings import ServerSettings

openai = pytest.importorskip("openai")
pytest.importorskip("websockets")
pytest.importorskip("faster_whisper")
QUESTION = Path(__file__).resolve().parents[2] / "examples" / "question_capital.wav"
RATE = 24000


@pytest.fixture(scope="module")
def lite_realtime(server_factory: Any) -> Any:
    from stepaudio.engines.registry import create_engine

    try:
        engine: Engine = create_engine("lite", chat_model="smollm2", max_new_tokens=40)
        engine.synthesizer.voices()  # type: ignore[union-attr]  # loads Piper: fails here when absent
    except (StepAudioError, ImportError) as exc:
        pytest.skip(f"the lite engine is not usable here: {exc}")
    return server_factory(ServerSettings(max_new_tokens=40), engine, mount_realtime=realtime_mount())


@pytest.mark.slow
def test_spoken_question_gets_a_spoken_answer(lite_realtime: Any) -> None:
    samples, rate = sf.read(QUESTION, dtype="float32")
    speech = soxr.resample(samples, rate, RATE)
    stream = np.concatenate([np.zeros(RATE // 2), speech, np.zeros(RATE)])
    pcm = (np.clip(stream, -1, 1) * 32767).astype("<i2").tobytes()
    client = openai.OpenAI(base_url=lite_realtime.url + "/v1", api_key="unused", max_retries=0)
    with client.realtime.connect(model="stepaudio-realtime") as conn:
        assert conn.recv().type == "session.created"
        conn.session.update(session={"type": "realtime", "instructions": "Answer in one short sentence."})
        chunk = RATE // 10 * 2
        for start in range(0, len(pcm), chunk):  # real time, as a microphone would
            conn.input_audio_buffer.append(audio=base64.b64encode(pcm[start : start + chunk]).decode())
            time.sleep(0.1)
        heard, reply, audio = "", "", b""
        for event in conn:
            if event.type == "conversation.item.input_audio_transcription.completed":
                heard = event.transcript
            elif event.type == "response.output_audio_transcript.delta":
                reply += event.delta
            elif event.type == "response.output_audio.delta":
                audio += base64.b64decode(event.delta)
            elif event.type == "error":
                pytest.fail(event.error.message)
            elif event.type == "response.done":
                assert event.response.status in ("completed", "incomplete")
                break
    assert {"capital", "france"} <= set(re.findall(r"[a-z]+", heard.lower())), heard
    assert "paris" in reply.lower(), reply
    seconds = len(audio) / 2 / RATE
    assert seconds > 0.5 and np.abs(np.frombuffer(audio, "<i2")).max() > 1000
