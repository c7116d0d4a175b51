"""The Realtime wire format against the official `openai` client's own types: a spoken session through
`client.realtime.connect` (GA) and `client.beta.realtime.connect` (beta) on a live server with the tiny engine.

Every event the server sends is validated against the client's pydantic model for its type (what the client
builds without validation) and serialised back with pydantic's warnings as errors, so a field of the wrong
shape fails here instead of showing up as a client's serializer warning.
"""

from __future__ import annotations

import base64
import json
import typing
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from stepaudio.server.realtime_schemas import SessionFields
from stepaudio.server.realtime_wire import to_beta
from stepaudio.server.realtime_ws import realtime_mount
from stepaudio.server.settings import ServerSettings

from .conftest import tone_seconds

openai = pytest.importorskip("openai")
pytest.importorskip("websockets")
from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent  # noqa: E402
from openai.types.realtime import RealtimeServerEvent  # noqa: E402

RATE = 24000
TONE_RATE = 16000  # the tiny engine's synthesiser
SECONDS_PER_CHAR = 0.01
pytestmark = [pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"),
              pytest.mark.filterwarnings("error::UserWarning")]


def _models(union: Any) -> dict[str, Any]:
    """event type -> the client's model class, from its discriminated union of server events."""
    classes = typing.get_args(typing.get_args(union)[0])
    return {typing.get_args(cls.model_fields["type"].annotation)[0]: cls for cls in classes}


GA_MODELS = _models(RealtimeServerEvent)
BETA_MODELS = _models(BetaServerEvent)


def energy_vad() -> Callable[[np.ndarray], float]:
    return lambda frame: float(np.sqrt(np.mean(np.square(frame))) > 0.02)


def tone_pcm(seconds: float) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def rt(server_factory: Any, make_engine: Any) -> Any:
    return server_factory(ServerSettings(), make_engine(), mount_realtime=realtime_mount(vad_factory=energy_vad))


def receive(conn: Any, models: dict[str, Any], until: str) -> list[dict[str, Any]]:
    """Raw events up to `until`, each checked against the client's model for its type."""
    events = []
    while True:
        raw = conn.recv_bytes()
        event = json.loads(raw)
        assert event["type"] in models, f"the client has no type {event['type']!r}"
        models[event["type"]].model_validate(event)  # a ValidationError names the field
        conn.parse_event(raw).to_dict()  # what a client does with it: no serializer warnings
        events.append(event)
        if event["type"] == until:
            return events


def spoken_turn(conn: Any) -> None:
    pcm = tone_pcm(1.0)
    for start in range(0, len(pcm), 9600):  # 0.2 s appends
        conn.input_audio_buffer.append(audio=base64.b64encode(pcm[start : start + 9600]).decode())
    conn.input_audio_buffer.commit()
    conn.response.create()


def audio_of(events: list[dict[str, Any]], kind: str) -> np.ndarray:
    return np.frombuffer(b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == kind), "<i2")


def test_official_client_spoken_session_ga(rt: Any) -> None:
    client = openai.OpenAI(base_url=rt.url + "/v1", api_key="unused", max_retries=0)
    with client.realtime.connect(model="stepaudio-realtime") as conn:
        created = receive(conn, GA_MODELS, "session.created")[-1]["session"]
        assert created["type"] == "realtime" and created["audio"]["output"]["format"] == {"type": "audio/pcm",
                                                                                          "rate": RATE}
        conn.session.update(session={"type": "realtime", "output_modalities": ["audio"], "instructions": "Be brief.",
                                     "audio": {"input": {"turn_detection": None, "transcription": {"model": "x"}},
                                               "output": {"voice": "low", "format": {"type": "audio/pcm",
                                                                                     "rate": RATE}}}})
        session = receive(conn, GA_MODELS, "session.updated")[-1]["session"]
        assert session["audio"]["output"]["voice"] == "low" and session["audio"]["input"]["turn_detection"] is None
        spoken_turn(conn)
        events = receive(conn, GA_MODELS, "response.done")
        events += receive(conn, GA_MODELS, "output_audio_buffer.stopped")
    kinds = [e["type"] for e in events]
    heard = next(e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed")
    assert heard["transcript"] == "heard 1.0 seconds" and heard["usage"] == {"type": "duration", "seconds": 1.0}
    for kind in ("conversation.item.added", "conversation.item.done", "response.output_audio_transcript.delta",
                 "response.output_audio_transcript.done", "response.output_audio.done"):
        assert kind in kinds, kind
    assert kinds.index("output_audio_buffer.started") < kinds.index("response.output_audio.delta")
    done = events[kinds.index("response.done")]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"][0]["type"] == "output_audio"
    transcript = done["output"][0]["content"][0]["transcript"]
    assert transcript == "You said: heard 1.0 seconds."
    expected = round(tone_seconds(transcript) * RATE)  # at 24 kHz
    assert abs(audio_of(events, "response.output_audio.delta").size - expected) <= 48


def test_official_client_text_and_tool_call_ga(rt: Any) -> None:
    tool = {"type": "function", "name": "lookup", "description": "find things",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}
    client = openai.OpenAI(base_url=rt.url + "/v1", api_key="unused", max_retries=0)
    with client.realtime.connect(model="stepaudio-realtime") as conn:
        receive(conn, GA_MODELS, "session.created")
        conn.session.update(session={"type": "realtime", "output_modalities": ["text"], "tools": [tool]})
        receive(conn, GA_MODELS, "session.updated")
        conn.conversation.item.create(item={"type": "message", "role": "user",
                                            "content": [{"type": "input_text", "text": "call the weather"}]})
        conn.response.create()
        events = receive(conn, GA_MODELS, "response.done")
        call = next(e for e in events if e["type"] == "response.function_call_arguments.done")
        conn.conversation.item.create(item={"type": "function_call_output", "call_id": call["call_id"],
                                            "output": "sunny"})
        conn.response.create()
        events = receive(conn, GA_MODELS, "response.done")
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "You said: sunny."
    message = events[-1]["response"]["output"][0]
    assert message["content"] == [{"type": "output_text", "text": text}]
    assert not any(e["type"].startswith("output_audio_buffer") for e in events)


def test_official_beta_client_gets_the_beta_interface(rt: Any) -> None:
    client = openai.OpenAI(base_url=rt.url + "/v1", websocket_base_url=f"ws://127.0.0.1:{rt.port}/v1",
                           api_key="unused", max_retries=0)  # the beta client assumes wss otherwise
    with client.beta.realtime.connect(model="stepaudio-realtime") as conn:  # sends OpenAI-Beta: realtime=v1
        created = receive(conn, BETA_MODELS, "session.created")[-1]["session"]
        assert created["input_audio_format"] == "pcm16" and "audio" not in created
        conn.session.update(session={"modalities": ["audio", "text"], "voice": "low", "turn_detection": None,
                                     "input_audio_format": "pcm16", "input_audio_transcription": {"model": "x"}})
        session = receive(conn, BETA_MODELS, "session.updated")[-1]["session"]
        assert session["voice"] == "low" and session["turn_detection"] is None
        spoken_turn(conn)
        events = receive(conn, BETA_MODELS, "response.done")
    kinds = {e["type"] for e in events}
    assert {"conversation.item.created", "response.audio.delta", "response.audio.done",
            "response.audio_transcript.done"} <= kinds
    assert not kinds & {"conversation.item.added", "conversation.item.done", "response.output_audio.delta"}
    done = events[-1]["response"]
    assert done["modalities"] == ["audio", "text"] and done["voice"] == "low"
    assert done["output"][0]["content"][0]["type"] == "audio"
    assert audio_of(events, "response.audio.delta").size > 0


def test_beta_session_names_are_accepted_on_a_ga_connection(rt: Any) -> None:
    client = openai.OpenAI(base_url=rt.url + "/v1", api_key="unused", max_retries=0)
    with client.realtime.connect(model="stepaudio-realtime") as conn:
        receive(conn, GA_MODELS, "session.created")
        conn.send({"type": "session.update", "session": {"modalities": ["text"], "voice": "low",  # type: ignore
                                                         "turn_detection": None, "max_response_output_tokens": 3}})
        session = receive(conn, GA_MODELS, "session.updated")[-1]["session"]
        conn.send({"type": "session.update", "session": {"output_audio_format": "g711_ulaw"}})  # type: ignore
        error = receive(conn, GA_MODELS, "error")[-1]["error"]
    assert session["output_modalities"] == ["text"] and session["audio"]["output"]["voice"] == "low"
    assert session["audio"]["input"]["turn_detection"] is None and session["max_output_tokens"] == 3
    assert error["code"] == "invalid_value" and "audio.output.format" in error["message"]


def test_output_audio_buffer_clear_stops_the_reply(server_factory: Any, make_engine: Any) -> None:
    server = server_factory(ServerSettings(), make_engine(synth_delay=0.3),
                            mount_realtime=realtime_mount(vad_factory=energy_vad))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with client.realtime.connect(model="stepaudio-realtime") as conn:
        receive(conn, GA_MODELS, "session.created")
        conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "one. two. three. four. five"}]})
        conn.response.create()
        receive(conn, GA_MODELS, "output_audio_buffer.started")
        conn.output_audio_buffer.clear()
        events = receive(conn, GA_MODELS, "response.done")
    kinds = [e["type"] for e in events]
    assert kinds.count("output_audio_buffer.cleared") == 1 and "output_audio_buffer.stopped" not in kinds
    assert events[-1]["response"]["status"] == "cancelled"


def test_to_beta_renames_reshapes_and_drops() -> None:
    item = {"id": "item_1", "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "x"}]}
    assert to_beta({"type": "conversation.item.added", "item": item}) == {
        "type": "conversation.item.created", "item": {**item, "content": [{"type": "text", "text": "x"}]}}
    assert to_beta({"type": "response.output_text.delta", "delta": "x"}) == {"type": "response.text.delta",
                                                                           "delta": "x"}
    assert to_beta({"type": "conversation.item.done", "item": item}) is None
    assert to_beta({"type": "input_audio_buffer.timeout_triggered"}) is None
    assert to_beta({"type": "input_audio_buffer.cleared"}) == {"type": "input_audio_buffer.cleared"}


def test_beta_session_fields_fold_into_the_ga_shape() -> None:
    fields = SessionFields.model_validate({"modalities": ["text"], "voice": "v", "speed": 2.0, "turn_detection": None,
                                           "input_audio_transcription": {"language": "en"},
                                           "input_audio_format": "pcm16", "max_response_output_tokens": "inf"})
    assert fields.output_modalities == ["text"] and fields.max_output_tokens == "inf"
    assert fields.audio is not None and fields.audio.output is not None and fields.audio.input is not None
    assert fields.audio.output.voice == "v" and fields.audio.output.speed == 2.0
    assert "turn_detection" in fields.audio.input.model_fields_set and fields.audio.input.turn_detection is None
    assert fields.audio.input.transcription is not None and fields.audio.input.transcription.language == "en"
    ga_wins = SessionFields.model_validate({"voice": "beta", "audio": {"output": {"voice": "ga"}}})
    assert ga_wins.audio is not None and ga_wins.audio.output is not None and ga_wins.audio.output.voice == "ga"
