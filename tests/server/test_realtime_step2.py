"""`/v1/realtime` on a live server over the tiny Step-Audio 2 stack: PCM16 at 24 kHz goes in over the socket,
the turn service hands the committed speech to the model as audio features (mels spliced over the prompt's
placeholders, no transcript asked for), and the model's own text and 24 kHz speech stream back; a second turn
carries the first question as audio; server VAD commits a turn by itself."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stepaudio.audio.io import resample
from stepaudio.audio_encoder.frontend import mel_frames, placeholder_count
from stepaudio.engines.registry import create_engine
from stepaudio.engines.step2.model import Step2Model
from stepaudio.server.realtime_ws import RealtimeLimits, realtime_mount
from stepaudio.server.settings import ServerSettings
from stepaudio.testing.tiny_stack import speech_like
from stepaudio.testing.tiny_step2 import PromptSpy, write_tiny_step2_stack

from .conftest import append_audio, recv_until

websockets = pytest.importorskip("websockets", reason="uvicorn needs the websockets package for WebSockets")
from websockets.sync.client import connect  # noqa: E402

RATE = 24000


def energy_vad() -> Any:
    return lambda frame: float(np.sqrt(np.mean(np.square(frame))) > 0.02)


@pytest.fixture(scope="module")
def server(server_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    stack: Path = write_tiny_step2_stack(tmp_path_factory.mktemp("step2"))
    engine = create_engine("step2", model_path=str(stack), seed=0, max_segment_tokens=40, chat_max_tokens=8)
    limits = RealtimeLimits(max_message_bytes=400_000, idle_timeout_s=60.0, max_sessions=2)
    return server_factory(ServerSettings(max_new_tokens=8), engine, mount_realtime=realtime_mount(limits, energy_vad))


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> PromptSpy:
    spy = PromptSpy()
    monkeypatch.setattr(Step2Model, "prompt_embeds", spy.wrap(Step2Model.prompt_embeds))
    return spy


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def speech(seconds: float, seed: int) -> bytes:
    """Speech-like noise at 24 kHz, as a browser would send it."""
    return pcm16(resample(speech_like(seconds, 16000, seed), 16000, RATE))


def reply_of(events: list[dict[str, Any]]) -> tuple[str, np.ndarray]:
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta")
    audio = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")
    return text, np.frombuffer(audio, dtype="<i2")


def heard(spy: PromptSpy) -> list[tuple[list[int], list[int]]]:
    """The prompts that carried audio: their ids and each audio piece's mel frames."""
    return [(ids, [m.shape[1] for m in mels]) for ids, mels in spy.calls if mels]


def test_committed_speech_reaches_the_model_as_audio_features(server: Any, spy: PromptSpy) -> None:
    with connect(f"ws://127.0.0.1:{server.port}/v1/realtime") as ws:
        assert json.loads(ws.recv())["type"] == "session.created"
        ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "audio": {"input": {"turn_detection": None}}}}))
        recv_until(ws, "session.updated", 120.0, errors=False)
        append_audio(ws, speech(1.2, 4), chunk=9600)
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        ws.send(json.dumps({"type": "response.create"}))
        first = recv_until(ws, "response.done", 120.0, errors=False)
        time.sleep(reply_of(first)[1].size / RATE + 0.3)  # the response stays open until its audio has played
        append_audio(ws, speech(0.8, 5), chunk=9600)
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        ws.send(json.dumps({"type": "response.create"}))
        second = recv_until(ws, "response.done", 120.0, errors=False)
    prompts = heard(spy)
    assert len(prompts) == 2, [e["type"] for e in first + second]
    (_, [first_frames]), (ids, both) = prompts
    # 1.2 s at 24 kHz arrives as 19200 samples at 16 kHz (give or take the resampler's edge)
    assert abs(first_frames - mel_frames(19200)) <= 2
    assert len(both) == 2 and both[0] == first_frames and abs(both[1] - mel_frames(12800)) <= 2
    assert ids.count(spy.patch_ids[-1]) == sum(placeholder_count(n) for n in both)
    assert not any(e["type"].startswith("conversation.item.input_audio_transcription") for e in first + second)
    for events in (first, second):
        done = events[-1]["response"]
        assert done["status"] in ("completed", "incomplete"), done
        text, audio = reply_of(events)
        # the model's own words or speech (PCM16 at the session's 24 kHz): a tiny random model's sampled reply may
        # be speech tokens only, so either counts
        assert text.strip() or audio.size > 0


def test_server_vad_commits_the_turn_and_the_model_hears_it(server: Any, spy: PromptSpy) -> None:
    with connect(f"ws://127.0.0.1:{server.port}/v1/realtime") as ws:
        assert json.loads(ws.recv())["type"] == "session.created"
        silence = bytes(2 * RATE // 2)  # 0.5 s
        append_audio(ws, silence + speech(1.0, 6) + silence + silence, chunk=9600)
        events = recv_until(ws, "response.done", 120.0, errors=False)
    kinds = [e["type"] for e in events]
    for kind in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                 "input_audio_buffer.committed", "response.created", "response.output_audio.delta"):
        assert kind in kinds, kind
    [(ids, [frames])] = heard(spy)
    # the committed turn holds the speech and the VAD's padding, not the whole buffer of silence
    assert mel_frames(16000) <= frames < mel_frames(16000 * 2)
    assert ids.count(spy.patch_ids[-1]) == placeholder_count(frames)
