"""`/v1/realtime` on a live server with the tiny engine: the official `openai` realtime client and a raw
`websockets` client; audio in and out as base64 PCM16 at 24 kHz; auth, malformed and oversize events, the idle
timeout, the session cap, barge-in, cancel, tools and clean shutdown."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from stepaudio.engines.base import Abilities
from stepaudio.server.realtime_ws import RealtimeLimits, realtime_mount
from stepaudio.server.settings import ServerSettings

from .conftest import append_audio, recv_until, tone_seconds

websockets = pytest.importorskip("websockets", reason="uvicorn needs the websockets package for WebSockets")
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import ClientConnection, connect  # noqa: E402

RATE = 24000
TONE_RATE = 16000  # the tiny engine's synthesiser
SECONDS_PER_CHAR = 0.01


def energy_vad() -> Callable[[np.ndarray], float]:
    return lambda frame: float(np.sqrt(np.mean(np.square(frame))) > 0.02)


def pcm(seconds: float, amplitude: float = 0.3) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()


def say(ws: ClientConnection, text: str) -> None:
    content = [{"type": "input_text", "text": text}]
    ws.send(json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                                     "content": content}}))
    ws.send(json.dumps({"type": "response.create"}))


def audio_of(events: list[dict[str, Any]]) -> np.ndarray:
    chunks = [base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"]
    return np.frombuffer(b"".join(chunks), dtype="<i2")


@pytest.fixture(scope="module")
def rt(server_factory: Any, make_engine: Any) -> Any:
    limits = RealtimeLimits(max_message_bytes=200_000, idle_timeout_s=20.0, max_sessions=4)
    return server_factory(ServerSettings(), make_engine(synth_delay=0.05),
                          mount_realtime=realtime_mount(limits, energy_vad))


def ws_url(server: Any) -> str:
    return f"ws://127.0.0.1:{server.port}/v1/realtime"


@pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning")
def test_official_openai_client_text_and_audio_reply(rt: Any) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=rt.url + "/v1", api_key="unused", max_retries=0)
    with client.realtime.connect(model="stepaudio-realtime") as conn:
        created = conn.recv()
        assert created.type == "session.created" and created.session.audio.output.format.rate == RATE
        conn.session.update(session={"type": "realtime", "instructions": "Be brief.",
                                     "audio": {"output": {"voice": "low"}}})
        updated = conn.recv()
        assert updated.type == "session.updated" and updated.session.audio.output.voice == "low"
        conn.conversation.item.create(item={"type": "message", "role": "user",
                                            "content": [{"type": "input_text", "text": "hello there"}]})
        conn.response.create()
        kinds, transcript, audio = [], "", b""
        for event in conn:
            kinds.append(event.type)
            if event.type == "response.output_audio_transcript.delta":
                transcript += event.delta
            elif event.type == "response.output_audio.delta":
                audio += base64.b64decode(event.delta)
            elif event.type == "response.done":
                assert event.response.status == "completed"
                break
    assert transcript == "You said: hello there."
    expected = round(tone_seconds(transcript) * RATE)  # at 24 kHz
    assert abs(len(audio) // 2 - expected) <= 48
    assert kinds.index("response.created") < kinds.index("response.output_audio.delta") < kinds.index(
        "response.output_audio.done") < kinds.index("response.done")
    assert "response.output_audio_transcript.done" in kinds


def test_spoken_turn_with_server_vad(rt: Any) -> None:
    with connect(ws_url(rt)) as ws:
        assert json.loads(ws.recv())["type"] == "session.created"
        append_audio(ws, bytes(RATE) + pcm(1.0) + bytes(2 * RATE))  # 0.5 s silence, 1 s tone, 1 s silence
        events = recv_until(ws, "response.done")
    kinds = [e["type"] for e in events]
    for kind in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                 "input_audio_buffer.committed", "conversation.item.input_audio_transcription.completed",
                 "response.created", "response.output_audio.delta"):
        assert kind in kinds, kind
    started = next(e for e in events if e["type"] == "input_audio_buffer.speech_started")
    assert 100 <= started["audio_start_ms"] <= 500  # the tone starts at 500 ms, 300 ms of padding before
    heard = next(e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed")
    assert heard["transcript"].startswith("heard 1.")
    assert audio_of(events).size > 0 and events[-1]["response"]["status"] == "completed"
    assert len({e["event_id"] for e in events}) == len(events)


def test_api_key_on_handshake(server_factory: Any) -> None:
    server = server_factory(ServerSettings(api_key="s3cret"), mount_realtime=realtime_mount(vad_factory=energy_vad))
    with pytest.raises(InvalidStatus):
        connect(ws_url(server))
    with pytest.raises(InvalidStatus):
        connect(ws_url(server), additional_headers={"Authorization": "Bearer wrong"})
    with connect(ws_url(server), additional_headers={"Authorization": "Bearer s3cret"}) as ws:
        assert json.loads(ws.recv())["type"] == "session.created"
    # browsers cannot set headers: the key rides in a subprotocol, and "realtime" is the one chosen
    with connect(ws_url(server), subprotocols=["realtime", "openai-insecure-api-key.s3cret"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "realtime"
        assert json.loads(ws.recv())["type"] == "session.created"
    assert httpx.get(server.url + "/").status_code == 200  # the page itself stays open


@pytest.mark.parametrize(("message", "code"), [
    ("{not json", "invalid_json"),
    ("[1, 2]", "invalid_event"),
    ('{"type": "conversation.item.delete", "item_id": "x"}', "unknown_event"),
    ('{"type": "input_audio_buffer.append"}', "invalid_value"),
    ('{"type": "input_audio_buffer.append", "audio": "***"}', "invalid_audio"),
    ('{"type": "input_audio_buffer.append", "audio": "AAAA"}', "invalid_audio"),  # 3 bytes: not PCM16
    ('{"type": "session.update", "session": {"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}}',
     "invalid_value"),
    ('{"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcmu"}}}}}',
     "invalid_value"),
    ('{"type": "session.update", "session": {"audio": {"output": {"voice": "nobody"}}}}', "voice_not_found"),
    ('{"type": "session.update", "session": {"audio": {"output": {"speed": 9}}}}', "invalid_value"),
    ('{"type": "conversation.item.create", "item": {"type": "message", "role": "system", '
     '"content": [{"type": "input_text", "text": "x"}]}}', "invalid_value"),
    ('{"type": "conversation.item.truncate", "item_id": "nope", "content_index": 0, "audio_end_ms": 10}',
     "item_truncate_invalid_item_id"),
    ('{"type": "response.cancel"}', "response_cancel_not_active"),
    ('{"type": "input_audio_buffer.commit"}', "input_audio_buffer_commit_empty"),
])
def test_malformed_events_get_errors_and_the_session_goes_on(rt: Any, message: str, code: str) -> None:
    with connect(ws_url(rt)) as ws:
        recv_until(ws, "session.created")
        ws.send(json.dumps({"type": "session.update", "session": {
            "audio": {"input": {"turn_detection": None}}}}))  # manual turns: the commit case needs it
        recv_until(ws, "session.updated")
        ws.send(message)
        error = recv_until(ws, "error")[-1]["error"]
        assert error["code"] == code, error
        assert error["message"]
        say(ws, "still there")
        events = recv_until(ws, "response.done")
        assert events[-1]["response"]["status"] == "completed"


def test_binary_and_oversize_messages(rt: Any) -> None:
    with connect(ws_url(rt), max_size=None) as ws:
        recv_until(ws, "session.created")
        ws.send(b"\x00\x01")
        assert recv_until(ws, "error")[-1]["error"]["code"] == "invalid_event"
        big = base64.b64encode(bytes(300_000)).decode()
        ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": big}))
        error = recv_until(ws, "error")[-1]["error"]
        assert error["code"] == "message_too_large" and "200000" in error["message"]
        say(ws, "ok")
        assert recv_until(ws, "response.done")[-1]["response"]["status"] == "completed"


def test_idle_connection_is_closed(server_factory: Any) -> None:
    limits = RealtimeLimits(idle_timeout_s=0.5)
    server = server_factory(ServerSettings(), mount_realtime=realtime_mount(limits, energy_vad))
    with connect(ws_url(server)) as ws:
        recv_until(ws, "session.created")
        started = time.monotonic()
        assert recv_until(ws, "error", timeout=5)[-1]["error"]["code"] == "idle_timeout"
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1000
        assert 0.4 < time.monotonic() - started < 3


def test_session_cap_and_cleanup_on_disconnect(server_factory: Any) -> None:
    server = server_factory(ServerSettings(), mount_realtime=realtime_mount(RealtimeLimits(max_sessions=1),
                                                                            energy_vad))
    endpoint = server.app.state.realtime
    workers = lambda: sum(t.name == "realtime-worker" for t in threading.enumerate())  # noqa: E731
    before = workers()
    with connect(ws_url(server)) as first:
        recv_until(first, "session.created")
        assert endpoint.active == 1 and workers() == before + 1
        with connect(ws_url(server)) as second:
            assert json.loads(second.recv(timeout=5))["error"]["code"] == "too_many_sessions"
            with pytest.raises(ConnectionClosed) as info:
                second.recv(timeout=5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1013
    deadline = time.monotonic() + 10
    while (endpoint.active or workers() > before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert endpoint.active == 0 and workers() == before  # the session and its worker thread are gone


def test_barge_in_cancels_and_truncates(server_factory: Any, make_engine: Any) -> None:
    server = server_factory(ServerSettings(), make_engine(chat_delay=0.15),
                            mount_realtime=realtime_mount(vad_factory=energy_vad))
    with connect(ws_url(server)) as ws:
        recv_until(ws, "session.created")
        say(ws, "one. two. three. four. five. six. seven. eight")  # a reply of several sentences, slowly
        first = recv_until(ws, "response.output_audio.delta")
        item_id = next(e for e in first if e["type"] == "response.output_item.added")["item"]["id"]
        append_audio(ws, pcm(0.6))  # the user speaks over the reply
        events = recv_until(ws, "response.done")
        kinds = [e["type"] for e in events]
        assert "input_audio_buffer.speech_started" in kinds
        assert events[-1]["response"]["status"] == "cancelled"
        assert events[-1]["response"]["status_details"]["reason"] == "turn_detected"
        # the page stops playback and reports what was heard
        ws.send(json.dumps({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
                            "audio_end_ms": 50}))
        truncated = recv_until(ws, "conversation.item.truncated")[-1]
        assert truncated["item_id"] == item_id and truncated["audio_end_ms"] <= 50


def test_response_cancel(server_factory: Any, make_engine: Any) -> None:
    server = server_factory(ServerSettings(), make_engine(chat_delay=0.2),
                            mount_realtime=realtime_mount(vad_factory=energy_vad))
    with connect(ws_url(server)) as ws:
        recv_until(ws, "session.created")
        say(ws, "a long answer please with many words")
        recv_until(ws, "response.created")
        ws.send(json.dumps({"type": "response.cancel"}))
        done = recv_until(ws, "response.done")[-1]["response"]
        assert done["status"] == "cancelled" and done["status_details"]["reason"] == "client_cancelled"


def test_tools_and_text_modality(rt: Any) -> None:
    tool = {"type": "function", "name": "lookup", "description": "find things",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}
    with connect(ws_url(rt)) as ws:
        recv_until(ws, "session.created")
        ws.send(json.dumps({"type": "session.update", "session": {"tools": [tool], "output_modalities": ["text"]}}))
        session = recv_until(ws, "session.updated")[-1]["session"]
        assert session["tools"][0]["name"] == "lookup" and session["output_modalities"] == ["text"]
        say(ws, "call the weather")
        events = recv_until(ws, "response.done")
        call = next(e for e in events if e["type"] == "response.function_call_arguments.done")
        assert call["name"] == "lookup" and json.loads(call["arguments"]) == {"query": "the weather"}
        assert any(e["type"] == "response.function_call_arguments.delta" for e in events)
        assert any(item["type"] == "function_call" for item in events[-1]["response"]["output"])
        ws.send(json.dumps({"type": "conversation.item.create",
                            "item": {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}}))
        added = recv_until(ws, "conversation.item.added")[-1]["item"]
        assert added["type"] == "function_call_output" and added["call_id"] == call["call_id"]
        ws.send(json.dumps({"type": "response.create"}))
        events = recv_until(ws, "response.done")
        text = next(e for e in events if e["type"] == "response.output_text.done")["text"]
        assert text == "You said: sunny." and not audio_of(events).size


def test_page_and_assets_are_served(rt: Any) -> None:
    page = httpx.get(rt.url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/static/app.js" in page.text and "/static/style.css" in page.text
    for asset in ("app.js", "talk.js", "playground.js", "common.js", "worklets.js", "style.css"):
        response = httpx.get(f"{rt.url}/static/{asset}")
        assert response.status_code == 200 and len(response.text) > 200, asset
    assert "javascript" in httpx.get(rt.url + "/static/app.js").headers["content-type"]


def test_a_batch_of_malformed_events_never_ends_the_session(rt: Any) -> None:
    rng = np.random.default_rng(0)
    junk_audio = [base64.b64encode(rng.bytes(int(n))).decode() for n in rng.integers(0, 5000, 20) * 2]
    messages: list[Any] = [
        *({"type": "input_audio_buffer.append", "audio": audio} for audio in junk_audio),  # noise at full scale
        {"type": "input_audio_buffer.append", "audio": 42},
        {"type": "session.update", "session": None},
        {"type": "session.update", "session": {"instructions": ["x"]}},
        {"type": "session.update", "session": {"max_output_tokens": -1}},
        {"type": "session.update", "session": {"tools": [{"type": "function"}]}},
        {"type": "session.update", "session": {"audio": {"input": {"turn_detection": {"threshold": 7}}}}},
        {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": []}},
        {"type": "conversation.item.create", "item": {"type": "function_call"}},
        {"type": "conversation.item.create"},
        {"type": "conversation.item.truncate", "item_id": "x", "audio_end_ms": -5},
        {"type": "response.create", "response": {"output_modalities": ["video"]}},
        {"type": None}, {"type": 7}, {}, [], "text", 1e308, None,
    ]
    with connect(ws_url(rt)) as ws:
        recv_until(ws, "session.created")
        for message in messages:
            ws.send(json.dumps(message))
        ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        ws.send(json.dumps({"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}}))
        events = recv_until(ws, "session.updated", timeout=30)
        ws.send(json.dumps({"type": "response.cancel"}))  # a reply to the noise may be running
        say(ws, "done")
        while events[-1]["type"] != "response.done" or events[-1]["response"]["status"] != "completed":
            events += recv_until(ws, "response.done", timeout=30)
    codes = [e["error"]["code"] for e in events if e["type"] == "error"]
    assert "server_error" not in codes
    rejected = [c for c in codes if c.startswith("invalid_") or c == "unknown_event"]
    assert len(rejected) == len(messages) - len(junk_audio)  # one error for each malformed event


def test_without_a_vad_turns_are_manual(server_factory: Any) -> None:
    def missing() -> Any:
        raise ImportError("no faster_whisper here")

    server = server_factory(ServerSettings(), mount_realtime=realtime_mount(vad_factory=missing))
    with connect(ws_url(server)) as ws:
        session = recv_until(ws, "session.created")[-1]["session"]
        assert session["audio"]["input"]["turn_detection"] is None
        append_audio(ws, pcm(0.7))
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        ws.send(json.dumps({"type": "response.create"}))
        events = recv_until(ws, "response.done")
        heard = next(e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed")
        assert heard["transcript"] == "heard 0.7 seconds"
        ws.send(json.dumps({"type": "session.update", "session": {"audio": {"input": {
            "turn_detection": {"type": "server_vad"}}}}}))
        assert "VAD" in recv_until(ws, "error")[-1]["error"]["message"]


def test_transcript_deltas_add_up_to_the_done_transcript(rt: Any) -> None:
    with connect(ws_url(rt)) as ws:
        recv_until(ws, "session.created")
        say(ws, "one. two. three")  # spoken sentence by sentence
        events = recv_until(ws, "response.done")
    deltas = [e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"]
    done = next(e for e in events if e["type"] == "response.output_audio_transcript.done")["transcript"]
    assert len(deltas) >= 3 and "".join(deltas) == done == "You said: one. two. three."


def test_an_engine_that_hears_gets_input_transcripts_only_when_asked(server_factory: Any, make_engine: Any) -> None:
    engine = dataclasses.replace(make_engine(), abilities=Abilities(hears_audio=True))
    server = server_factory(ServerSettings(), engine, mount_realtime=realtime_mount(vad_factory=energy_vad))
    with connect(ws_url(server)) as ws:
        session = recv_until(ws, "session.created")[-1]["session"]
        assert session["audio"]["input"]["transcription"] is None  # as OpenAI: off until asked
        append_audio(ws, bytes(RATE) + pcm(1.0) + bytes(2 * RATE))
        events = recv_until(ws, "response.done")
        assert not any(e["type"].startswith("conversation.item.input_audio_transcription") for e in events)
        assert engine.transcriber.heard == []  # the chat model heard the audio itself
        assert engine.chat.seen[-1][-1].audio is not None
        ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {
            "input": {"transcription": {"model": "default"}}}}}))
        recv_until(ws, "session.updated")
        append_audio(ws, bytes(RATE) + pcm(1.0) + bytes(2 * RATE))
        events = recv_until(ws, "response.done")
    kinds = [e["type"] for e in events]
    assert "conversation.item.input_audio_transcription.completed" in kinds
    assert kinds.count("conversation.item.input_audio_transcription.completed") == 1
    assert engine.transcriber.heard  # (a speculation discarded after its reply may have made one more)
