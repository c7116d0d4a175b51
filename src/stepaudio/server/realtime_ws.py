"""`/v1/realtime`: the OpenAI Realtime WebSocket API over a `RealtimeSession`, one per connection.

The GA interface by default; a client that asks for the beta one on the handshake (the `OpenAI-Beta:
realtime=v1` header, or the `openai-beta.realtime-v1` subprotocol) gets beta event names and shapes
(`realtime_wire.to_beta`), as the official API did while it served both.

The API key is checked on the handshake by `EdgeGuard`. Each connection validates client events with pydantic,
decodes base64 PCM16 at 24 kHz, and runs every session call in a worker thread (the VAD and the session lock
must not stall the event loop). Outputs come back through one queue and are sent by one task, so events keep
their order. A message over the size limit, bad JSON, an unknown event or bad audio gets an `error` event
and the connection goes on; a connection with no traffic either way for the idle timeout is closed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
from fastapi import FastAPI, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from stepaudio.audio.vad import silero_frame_vad
from stepaudio.errors import StepAudioError
from stepaudio.realtime import events as ev
from stepaudio.realtime.session import RealtimeSession, Vad, asyncio_sink
from stepaudio.server.app import RealtimeMount
from stepaudio.server.audio_out import PCM_RATE
from stepaudio.server.context import ServerContext
from stepaudio.server.errors import ApiError
from stepaudio.server.realtime_config import SessionView, initial_config, session_changes
from stepaudio.server.realtime_schemas import CLIENT_EVENTS, EVENT_TYPES
from stepaudio.server.realtime_schemas import ItemCreate as ItemCreateIn
from stepaudio.server.realtime_wire import Event, Wire, to_beta

MIB = 1024 * 1024
BETA_SUBPROTOCOL = "openai-beta.realtime-v1"
Outgoing = ev.Output | dict[str, Any]
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RealtimeLimits:
    max_message_bytes: int = 4 * MIB  # one client event (an append of ~30 s of audio)
    idle_timeout_s: float = 120.0  # no message either way for this long closes the connection
    max_sessions: int = 32  # open realtime connections; more are refused (close code 1013)
    max_buffer_seconds: float = 300.0  # uncommitted input audio kept per session


def realtime_mount(limits: RealtimeLimits | None = None, vad_factory: Callable[[], Vad] | None = None
                   ) -> RealtimeMount:
    """The `mount_realtime` hook of `create_app`: adds the `/v1/realtime` WebSocket route."""

    def mount(app: FastAPI, context: ServerContext) -> None:
        endpoint = RealtimeEndpoint(context, limits or RealtimeLimits(), vad_factory or silero_frame_vad)
        app.state.realtime = endpoint
        app.add_api_websocket_route("/v1/realtime", endpoint.handle)

    return mount


class RealtimeEndpoint:
    def __init__(self, context: ServerContext, limits: RealtimeLimits, vad_factory: Callable[[], Vad]) -> None:
        self.context = context
        self.limits = limits
        self.vad_factory = vad_factory
        self.active = 0
        # session calls (VAD, locks, a close that joins the worker) run here, never on the event loop, and never
        # wait behind the default executor's other work: one call in flight per connection at most
        self.executor = ThreadPoolExecutor(max_workers=limits.max_sessions + 2, thread_name_prefix="realtime-io")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def handle(self, websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
        if self.active >= self.limits.max_sessions:
            await websocket.send_text(json.dumps(Wire().error("too_many_sessions", "the server has "
                                      f"{self.limits.max_sessions} realtime sessions open; try again later",
                                      kind="server_error")))
            await websocket.close(code=1013, reason="too many sessions")
            return
        self.active += 1
        try:
            await Connection(self, websocket, beta=wants_beta(websocket)).run()
        finally:
            self.active -= 1


def wants_beta(websocket: WebSocket) -> bool:
    """The beta interface was asked for: by header (servers, the SDKs' beta clients) or subprotocol (browsers)."""
    header = websocket.headers.get("openai-beta", "")
    offered = websocket.scope.get("subprotocols") or []
    return "realtime=v1" in header.replace(" ", "").split(",") or BETA_SUBPROTOCOL in offered


class Connection:
    def __init__(self, endpoint: RealtimeEndpoint, websocket: WebSocket, beta: bool = False) -> None:
        self.endpoint = endpoint
        self.ws = websocket
        self.limits = endpoint.limits
        self.beta = beta
        self.wire = Wire()
        self.buffered_samples = 0  # appended since the last commit or clear: a manual commit's length
        self.view = SessionView(f"sess_{uuid.uuid4().hex[:20]}", voice="alloy", max_output_tokens="inf")
        self.outgoing: asyncio.Queue[Outgoing] = asyncio.Queue()
        self.last_activity = time.monotonic()
        self.sender: asyncio.Task[None] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        config = initial_config(self.endpoint.context, self.limits.max_buffer_seconds)
        try:
            vad: Vad | None = await self.endpoint.call(self.endpoint.vad_factory)
        except (ImportError, StepAudioError, OSError) as exc:  # no VAD: manual turns (commit + response.create)
            log.warning("realtime: no VAD (%s); sessions start without turn detection", exc)
            vad, config = None, replace(config, turn_detection=None)
        session = await self.endpoint.call(RealtimeSession, self.endpoint.context.engine, vad, config,
                                           asyncio_sink(loop, self.outgoing))  # type: ignore[arg-type]
        self.outgoing.put_nowait(self.wire.event("session.created", session=self.view.render(session.config)))
        self.sender = asyncio.create_task(self._send_loop())
        try:
            await self._receive_loop(session)
        finally:
            self.sender.cancel()
            await self.endpoint.call(session.close)

    async def _send_loop(self) -> None:
        try:
            while True:
                item = await self.outgoing.get()
                events = [item] if isinstance(item, dict) else self.wire.encode(item)
                if isinstance(item, ev.AudioCommitted):
                    self.buffered_samples = 0
                for event in events:
                    out = to_beta(event) if self.beta else event
                    if out is not None:  # None: an event the beta interface has no name for
                        await self.ws.send_text(json.dumps(out, ensure_ascii=False))
                    self.last_activity = time.monotonic()
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the client is gone: the receive loop sees the disconnect and ends the session

    async def _receive_loop(self, session: RealtimeSession) -> None:
        while True:
            remaining = self.limits.idle_timeout_s - (time.monotonic() - self.last_activity)
            if remaining <= 0:
                await self._close(1000, "idle timeout", self.wire.error(
                    "idle_timeout", f"no events for {self.limits.idle_timeout_s:g} s; closing"))
                return
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=remaining)
            except asyncio.TimeoutError:
                continue  # the loop re-checks: server output may have kept the connection busy
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            self.last_activity = time.monotonic()
            text, data = message.get("text"), message.get("bytes")
            size = len(text.encode()) if text is not None else len(data or b"")
            if size > self.limits.max_message_bytes:
                self._error("message_too_large", f"the event is {size} bytes, more than the "
                            f"{self.limits.max_message_bytes} allowed; send audio in smaller appends")
            elif text is None:
                self._error("invalid_event", "binary frames are not supported: send JSON events as text")
            else:
                await self._handle_text(session, text)

    async def _close(self, code: int, reason: str, event: Event) -> None:
        if self.sender is not None:  # stop the sender first: one task sends at a time
            self.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sender
        await self.ws.send_text(json.dumps(event))
        await self.ws.close(code=code, reason=reason)

    def _error(self, code: str, message: str, event_id: str | None = None, param: str | None = None) -> None:
        self.outgoing.put_nowait(self.wire.error(code, message, event_id, param))

    # ------------------------------------------------------------ client events

    async def _handle_text(self, session: RealtimeSession, text: str) -> None:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            self._error("invalid_json", f"the event is not valid JSON: {exc}")
            return
        if not isinstance(raw, dict):
            self._error("invalid_event", "an event is a JSON object with a 'type'")
            return
        event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
        if raw.get("type") not in EVENT_TYPES:
            self._error("unknown_event", f"unsupported event type {raw.get('type')!r}; this server accepts "
                        f"{', '.join(EVENT_TYPES)}", event_id, "type")
            return
        try:
            event = CLIENT_EVENTS.validate_python(raw)
            await self._dispatch(session, event)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"][1:])
            self._error("invalid_value", f"{raw['type']}: {where}: {first['msg']}", event_id, where or None)
        except ApiError as exc:
            self._error(exc.code or "invalid_value", exc.message, event_id, exc.param)
        except StepAudioError as exc:
            self._error("invalid_value", str(exc), event_id)
        except Exception as exc:  # never let one event end the connection
            self.outgoing.put_nowait(self.wire.error("server_error", f"{type(exc).__name__}: {exc}", event_id,
                                                     kind="server_error"))

    async def _dispatch(self, session: RealtimeSession, event: Any) -> None:
        kind = event.type
        if kind == "input_audio_buffer.append":
            samples = _decode_pcm16(event.audio)
            if samples.size:
                self.buffered_samples += samples.size
                await self.endpoint.call(session.append_audio, samples, PCM_RATE)
        elif kind == "session.update":
            changes, view = await session_changes(event.session, self.view, self.endpoint.context)
            config = await self.endpoint.call(lambda: session.update(**changes))
            self.view = view
            self.wire.modalities = list(config.modalities)
            self.wire.voice = view.voice
            self.outgoing.put_nowait(self.wire.event("session.updated", session=view.render(config)))
        elif kind == "output_audio_buffer.clear":
            for cleared in self.wire.clear_output_audio():
                self.outgoing.put_nowait(cleared)
            await self.endpoint.call(session.send, ev.ResponseCancel())
        else:
            if kind == "input_audio_buffer.commit":
                self.wire.manual_commits.append(self.buffered_samples / PCM_RATE)
            if kind in ("input_audio_buffer.commit", "input_audio_buffer.clear"):
                self.buffered_samples = 0
            command = self._command(event)
            if command is not None:
                await self.endpoint.call(session.send, command)

    def _command(self, event: Any) -> ev.Event | None:
        match event.type:
            case "input_audio_buffer.commit":
                return ev.InputAudioCommit()
            case "input_audio_buffer.clear":
                return ev.InputAudioClear()
            case "conversation.item.create":
                return self._item(event)
            case "conversation.item.truncate":
                return ev.ItemTruncate(event.item_id, float(event.audio_end_ms))
            case "response.create":
                fields = event.response
                if fields is None:
                    return ev.ResponseCreate()
                modalities = tuple(fields.output_modalities) if fields.output_modalities else None
                return ev.ResponseCreate(fields.instructions, modalities)
            case "response.cancel":
                return ev.ResponseCancel()
        return None

    def _item(self, event: ItemCreateIn) -> ev.Event:
        item = event.item
        if item.type == "function_call_output":
            self.wire.call_ids.append(item.call_id)
            return ev.FunctionCallOutput(item.call_id, item.output)
        if item.role != "user":
            raise ApiError(400, f"{item.role} message items are not supported: set the system prompt with "
                           "session.update instructions", code="invalid_value", param="item.role")
        return ev.TextInput("\n".join(part.text for part in item.content))


def _decode_pcm16(audio: str) -> np.ndarray:
    try:
        data = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "input_audio_buffer.append: audio is not valid base64", code="invalid_audio",
                       param="audio") from None
    if len(data) % 2:
        raise ApiError(400, "input_audio_buffer.append: PCM16 audio has an even number of bytes",
                       code="invalid_audio", param="audio")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
