"""Session outputs as OpenAI Realtime (GA) server events: JSON dicts, audio as base64 PCM16 at 24 kHz.

The controller's outputs say what happened; clients also expect the bookkeeping events around a response
(response.output_item.added/done, response.content_part.added/done, conversation.item.done) and full item
and response objects. `Wire` keeps the little per-connection state this needs (the open response and its
items, one 24 kHz resampler per response, the call ids of function outputs the client sent) and turns one
output into the list of events to send, in order.
"""

from __future__ import annotations

import base64
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soxr

from stepaudio.realtime import events as ev

WIRE_RATE = 24000
Event = dict[str, Any]


def pcm16_base64(samples: np.ndarray) -> str:
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return base64.b64encode((clipped * 32767.0).round().astype("<i2").tobytes()).decode("ascii")


@dataclass
class _Response:
    response_id: str
    modalities: list[str]
    voice: str
    item_id: str | None = None
    previous_item_id: str | None = None
    text_part: bool = False
    transcript: str = ""
    items: list[Event] = field(default_factory=list)  # output items, done
    resampler: Any = None
    rate: int = 0


class Wire:
    def __init__(self) -> None:
        self._next = 0
        self._response: _Response | None = None
        self._pending_call: ev.ItemAdded | None = None
        self.call_ids: deque[str] = deque(maxlen=1024)  # function_call_output items sent, oldest first
        self.modalities: list[str] = ["audio"]
        self.voice = "alloy"

    def event(self, type_: str, **fields: Any) -> Event:
        self._next += 1
        return {"type": type_, "event_id": f"event_{self._next}", **fields}

    def error(self, code: str, message: str, client_event_id: str | None = None, param: str | None = None,
              kind: str = "invalid_request_error") -> Event:
        return self.event("error", error={"type": kind, "code": code, "message": message, "param": param,
                                          "event_id": client_event_id})

    # ------------------------------------------------------------ outputs

    def encode(self, output: ev.Output) -> list[Event]:
        r = self._response
        match output:
            case ev.SpeechStarted():
                return [self.event(output.openai_type, audio_start_ms=output.audio_start_ms, item_id=output.item_id)]
            case ev.SpeechStopped():
                return [self.event(output.openai_type, audio_end_ms=output.audio_end_ms, item_id=output.item_id)]
            case ev.AudioCommitted():
                return [self.event(output.openai_type, previous_item_id=output.previous_item_id,
                                   item_id=output.item_id)]
            case ev.BufferCleared():
                return [self.event(output.openai_type)]
            case ev.TimeoutTriggered():
                return [self.event(output.openai_type, audio_start_ms=output.audio_start_ms,
                                   audio_end_ms=output.audio_end_ms, item_id=None)]
            case ev.ItemAdded():
                return self._item_added(output)
            case ev.InputTranscriptionCompleted():
                return [self.event(output.openai_type, item_id=output.item_id, content_index=0,
                                   transcript=output.transcript)]
            case ev.InputTranscriptionFailed():
                return [self.event(output.openai_type, item_id=output.item_id, content_index=0,
                                   error={"type": "transcription_error", "code": "transcription_failed",
                                          "message": output.message, "param": None})]
            case ev.ItemTruncated():
                return [self.event(output.openai_type, item_id=output.item_id, content_index=0,
                                   audio_end_ms=output.audio_end_ms)]
            case ev.ResponseCreated():
                self._response = _Response(output.response_id, list(self.modalities), self.voice)
                return [self.event(output.openai_type, response=self._response_object(self._response, "in_progress"))]
            case ev.FunctionCallArgumentsDone():
                return self._function_call(output)
            case ev.ErrorOutput():
                kind = "server_error" if output.code in ("server_error", "generation_failed") else \
                    "invalid_request_error"
                return [self.error(output.code, output.message, kind=kind)]
        if r is None or getattr(output, "response_id", None) != r.response_id:
            return []  # output of a response that is no longer open
        return self._response_output(r, output)

    def _response_output(self, r: _Response, output: ev.Output) -> list[Event]:
        at = {"response_id": r.response_id, "item_id": r.item_id, "output_index": 0, "content_index": 0}
        match output:
            case ev.OutputTranscriptDelta():
                delta = _spaced(r.transcript, output.delta)
                r.transcript += delta
                return [self.event(output.openai_type, **at, delta=delta)] if delta else []
            case ev.OutputTextDelta():
                r.transcript += output.delta
                return [self.event(output.openai_type, **at, delta=output.delta)]
            case ev.OutputAudioDelta():
                samples = self._to_wire_rate(r, output.samples, output.sample_rate)
                return [self.event(output.openai_type, **at, delta=pcm16_base64(samples))] if samples.size else []
            case ev.OutputTranscriptDone():
                return [self.event(output.openai_type, **at, transcript=output.transcript)]
            case ev.OutputTextDone():
                return [self.event(output.openai_type, **at, text=output.text)]
            case ev.OutputAudioDone():
                tail = self._flush(r)
                events = [self.event("response.output_audio.delta", **at, delta=pcm16_base64(tail))] if tail.size \
                    else []
                return [*events, self.event(output.openai_type, **at)]
            case ev.ResponseDone():
                return self._response_done(r, output)
        return []

    # ------------------------------------------------------------ items

    def _item_added(self, output: ev.ItemAdded) -> list[Event]:
        previous = output.previous_item_id
        if output.role == "user":
            part = ({"type": "input_audio", "transcript": None} if output.content_type == "input_audio"
                    else {"type": "input_text", "text": output.text})
            item = _message(output.item_id, "user", "completed", [part])
            return [self.event("conversation.item.added", previous_item_id=previous, item=item),
                    self.event("conversation.item.done", previous_item_id=previous, item=item)]
        if output.role == "tool":
            call_id = self.call_ids.popleft() if self.call_ids else ""
            item = {"id": output.item_id, "object": "realtime.item", "type": "function_call_output",
                    "status": "completed", "call_id": call_id, "output": output.text}
            return [self.event("conversation.item.added", previous_item_id=previous, item=item),
                    self.event("conversation.item.done", previous_item_id=previous, item=item)]
        if output.content_type == "function_call":
            self._pending_call = output  # sent with its arguments, which follow at once
            return []
        r = self._response
        if r is None:
            return []
        r.item_id, r.text_part = output.item_id, output.content_type == "output_text"
        r.previous_item_id = previous
        item = _message(output.item_id, "assistant", "in_progress", [])
        part = {"type": "text", "text": ""} if r.text_part else {"type": "audio", "transcript": ""}
        return [self.event("response.output_item.added", response_id=r.response_id, output_index=0, item=item),
                self.event("conversation.item.added", previous_item_id=previous, item=item),
                self.event("response.content_part.added", response_id=r.response_id, item_id=r.item_id,
                           output_index=0, content_index=0, part=part)]

    def _function_call(self, output: ev.FunctionCallArgumentsDone) -> list[Event]:
        added, self._pending_call = self._pending_call, None
        previous = added.previous_item_id if added is not None else None
        r = self._response
        index = 1 + len(r.items) if r is not None else 0
        item = {"id": output.item_id, "object": "realtime.item", "type": "function_call", "status": "in_progress",
                "name": output.name, "call_id": output.call_id, "arguments": ""}
        done = {**item, "status": "completed", "arguments": output.arguments}
        if r is not None:
            r.items.append(done)
        at = {"response_id": output.response_id, "item_id": output.item_id, "output_index": index,
              "call_id": output.call_id}
        return [self.event("response.output_item.added", response_id=output.response_id, output_index=index,
                           item=item),
                self.event("conversation.item.added", previous_item_id=previous, item=item),
                self.event("response.function_call_arguments.delta", **at, delta=output.arguments),
                self.event(output.openai_type, **at, name=output.name, arguments=output.arguments),
                self.event("response.output_item.done", response_id=output.response_id, output_index=index,
                           item=done),
                self.event("conversation.item.done", previous_item_id=previous, item=done)]

    def _response_done(self, r: _Response, output: ev.ResponseDone) -> list[Event]:
        self._response = None
        events: list[Event] = []
        items = list(r.items)
        if r.item_id is not None:
            status = "completed" if output.status == "completed" else "incomplete"
            part = ({"type": "text", "text": r.transcript} if r.text_part
                    else {"type": "audio", "transcript": r.transcript})
            item = _message(r.item_id, "assistant", status, [part])
            at = {"response_id": r.response_id, "output_index": 0}
            events += [self.event("response.content_part.done", **at, item_id=r.item_id, content_index=0, part=part),
                       self.event("response.output_item.done", **at, item=item),
                       self.event("conversation.item.done", previous_item_id=r.previous_item_id, item=item)]
            items.insert(0, item)
        response = self._response_object(r, output.status, items)
        if output.status != "completed":
            response["status_details"] = {"type": output.status, "reason": output.reason}
        return [*events, self.event(output.openai_type, response=response)]

    def _response_object(self, r: _Response, status: str, output: list[Event] | None = None) -> Event:
        return {"object": "realtime.response", "id": r.response_id, "status": status, "status_details": None,
                "output": output or [], "conversation_id": "conv_1", "output_modalities": r.modalities,
                "audio": {"output": {"format": {"type": "audio/pcm", "rate": WIRE_RATE}, "voice": r.voice}},
                "usage": None, "metadata": None}

    # ------------------------------------------------------------ audio

    def _to_wire_rate(self, r: _Response, samples: np.ndarray, rate: int) -> np.ndarray:
        data = np.asarray(samples, dtype=np.float32).reshape(-1)
        if rate == WIRE_RATE:
            return data
        if r.resampler is None or r.rate != rate:
            r.resampler, r.rate = soxr.ResampleStream(rate, WIRE_RATE, 1, dtype="float32"), rate
        return np.asarray(r.resampler.resample_chunk(data), dtype=np.float32)

    def _flush(self, r: _Response) -> np.ndarray:
        if r.resampler is None:
            return np.zeros(0, np.float32)
        tail = np.asarray(r.resampler.resample_chunk(np.zeros(0, np.float32), last=True), dtype=np.float32)
        r.resampler = None
        return tail


def _spaced(text: str, sentence: str) -> str:
    """A sentence's transcript delta, so that deltas add up to the done transcript (sentences joined by a space,
    none between CJK characters)."""
    piece = sentence.strip()
    if piece and text and not (_wide(text[-1]) or _wide(piece[0])):
        return " " + piece
    return piece


def _wide(char: str) -> bool:
    return 0x2E80 <= ord(char) <= 0x9FFF or 0xFF00 <= ord(char) <= 0xFFEF


def _message(item_id: str, role: str, status: str, content: list[Event]) -> Event:
    return {"id": item_id, "object": "realtime.item", "type": "message", "status": status, "role": role,
            "content": content}
