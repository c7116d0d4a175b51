"""Session outputs as OpenAI Realtime server events: JSON dicts, audio as base64 PCM16 at 24 kHz.

The controller's outputs say what happened; clients also expect the bookkeeping events around a response
(response.output_item.added/done, response.content_part.added/done, conversation.item.done,
output_audio_buffer.started/stopped/cleared) and full item and response objects. `Wire` keeps the little
per-connection state this needs (the open response and its items, one 24 kHz pcm stream per response, the call
ids of function outputs the client sent, how long each committed input was) and turns one output into the
list of GA events to send, in order.

Clients of the beta interface (the `OpenAI-Beta: realtime=v1` header, or the `openai-beta.realtime-v1`
subprotocol in browsers, as the official API chose) get the same events renamed and reshaped by `to_beta`:
`response.audio.delta` for `response.output_audio.delta`, `conversation.item.created` for
`conversation.item.added`, `text`/`audio` content, flat `modalities`/`voice`/`pcm16` session objects.
"""

from __future__ import annotations

import base64
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from stepaudio.realtime import events as ev
from stepaudio.server.audio_out import PCM_RATE, PcmStream

Event = dict[str, Any]
AUDIO_FORMAT = {"type": "audio/pcm", "rate": PCM_RATE}


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
    pcm: PcmStream | None = None
    audio_started: bool = False  # output_audio_buffer.started was sent


class Wire:
    def __init__(self) -> None:
        self._next = 0
        self._response: _Response | None = None
        self._pending_call: ev.ItemAdded | None = None
        self.call_ids: deque[str] = deque(maxlen=1024)  # function_call_output items sent, oldest first
        self.modalities: list[str] = ["audio"]
        self.voice = "alloy"
        self.manual_commits: deque[float] = deque(maxlen=64)  # seconds of each input_audio_buffer.commit
        self._speech_start: dict[str, int] = {}  # item id -> audio_start_ms, while the VAD hears it
        self._spoken: dict[str, float] = {}  # item id -> seconds of speech, from the VAD
        self._committed: dict[str, float] = {}  # item id -> seconds of committed audio, until transcribed

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
                self._speech_start = {output.item_id: output.audio_start_ms}
                return [self.event(output.openai_type, audio_start_ms=output.audio_start_ms, item_id=output.item_id)]
            case ev.SpeechStopped():
                start = self._speech_start.pop(output.item_id, output.audio_end_ms)
                self._spoken = {output.item_id: max(0, output.audio_end_ms - start) / 1000}
                return [self.event(output.openai_type, audio_end_ms=output.audio_end_ms, item_id=output.item_id)]
            case ev.AudioCommitted():
                seconds = self._spoken.pop(output.item_id, None)
                if seconds is None:
                    seconds = self.manual_commits.popleft() if self.manual_commits else 0.0
                self._committed[output.item_id] = seconds
                while len(self._committed) > 64:  # transcripts that never came
                    self._committed.pop(next(iter(self._committed)))
                return [self.event(output.openai_type, previous_item_id=output.previous_item_id,
                                   item_id=output.item_id)]
            case ev.BufferCleared():
                self._speech_start.clear()
                return [self.event(output.openai_type)]
            case ev.TimeoutTriggered():
                return [self.event(output.openai_type, audio_start_ms=output.audio_start_ms,
                                   audio_end_ms=output.audio_end_ms, item_id=None)]
            case ev.ItemAdded():
                return self._item_added(output)
            case ev.InputTranscriptionCompleted():
                seconds = self._committed.pop(output.item_id, 0.0)
                return [self.event(output.openai_type, item_id=output.item_id, content_index=0,
                                   transcript=output.transcript,
                                   usage={"type": "duration", "seconds": round(seconds, 3)})]
            case ev.InputTranscriptionFailed():
                self._committed.pop(output.item_id, None)
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
                if r.pcm is None or r.pcm.sample_rate != output.sample_rate:
                    tail = self._flush(r)
                    r.pcm = PcmStream(output.sample_rate)
                    data = tail + r.pcm.push(output.samples)
                else:
                    data = r.pcm.push(output.samples)
                if not data:
                    return []
                started = [] if r.audio_started else [self.event("output_audio_buffer.started",
                                                                 response_id=r.response_id)]
                r.audio_started = True
                return [*started, self.event(output.openai_type, **at, delta=_base64(data))]
            case ev.OutputTranscriptDone():
                return [self.event(output.openai_type, **at, transcript=output.transcript)]
            case ev.OutputTextDone():
                return [self.event(output.openai_type, **at, text=output.text)]
            case ev.OutputAudioDone():
                tail = self._flush(r)
                events = [self.event("response.output_audio.delta", **at, delta=_base64(tail))] if tail else []
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
            content = {**part, "type": "output_" + part["type"]}  # an item's content: output_text, output_audio
            item = _message(r.item_id, "assistant", status, [content])
            at = {"response_id": r.response_id, "output_index": 0}
            events += [self.event("response.content_part.done", **at, item_id=r.item_id, content_index=0, part=part),
                       self.event("response.output_item.done", **at, item=item),
                       self.event("conversation.item.done", previous_item_id=r.previous_item_id, item=item)]
            items.insert(0, item)
        response = self._response_object(r, output.status, items)
        if output.status != "completed":
            response["status_details"] = {"type": output.status, "reason": output.reason}
        after: list[Event] = []
        if r.audio_started:
            if output.status == "completed":
                after.append(self.event("output_audio_buffer.stopped", response_id=r.response_id))
            else:
                after += self._audio_cleared(r)
        return [*events, self.event(output.openai_type, response=response), *after]

    def _audio_cleared(self, r: _Response | None) -> list[Event]:
        """output_audio_buffer.cleared once for a response whose audio was cut off (barge-in, cancel)."""
        if r is None or not r.audio_started:
            return []
        r.audio_started = False
        return [self.event("output_audio_buffer.cleared", response_id=r.response_id)]

    def clear_output_audio(self) -> list[Event]:
        """The client's output_audio_buffer.clear: nothing more of the open response's audio is to be played."""
        return self._audio_cleared(self._response)

    def _response_object(self, r: _Response, status: str, output: list[Event] | None = None) -> Event:
        return {"object": "realtime.response", "id": r.response_id, "status": status, "status_details": None,
                "output": output or [], "conversation_id": "conv_1", "output_modalities": r.modalities,
                "audio": {"output": {"format": AUDIO_FORMAT, "voice": r.voice}},
                "usage": None, "metadata": None}

    # ------------------------------------------------------------ audio

    def _flush(self, r: _Response) -> bytes:
        pcm, r.pcm = r.pcm, None
        return pcm.finish() if pcm is not None else b""


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


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


# ---------------------------------------------------------------- the beta interface

BETA_NAMES = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
}
GA_ONLY = frozenset({"conversation.item.done", "input_audio_buffer.timeout_triggered"})


def to_beta(event: Event) -> Event | None:
    """A GA server event as the beta interface names and shapes it; None for events the beta has no name for."""
    kind = event["type"]
    if kind in GA_ONLY:
        return None
    out = {**event, "type": BETA_NAMES.get(kind, kind)}
    if "item" in out:
        out["item"] = _beta_item(out["item"])
    if "response" in out:
        out["response"] = _beta_response(out["response"])
    if "session" in out:
        out["session"] = _beta_session(out["session"])
    return out


def _beta_item(item: Event) -> Event:
    if "content" not in item:
        return item
    return {**item, "content": [{**part, "type": part["type"].removeprefix("output_")} for part in item["content"]]}


def _beta_response(response: Event) -> Event:
    out = {key: value for key, value in response.items() if key not in ("output_modalities", "audio")}
    out["modalities"] = response.get("output_modalities", ["audio"])
    out["voice"] = response.get("audio", {}).get("output", {}).get("voice")
    out["output_audio_format"] = "pcm16"
    out["output"] = [_beta_item(item) for item in response.get("output") or []]
    return out


def _beta_session(session: Event) -> Event:
    """The flat beta session object (no `type`; formats named `pcm16`; the model field left out, as the beta
    names only OpenAI's own models there)."""
    audio_in = session.get("audio", {}).get("input", {})
    audio_out = session.get("audio", {}).get("output", {})
    turn = audio_in.get("turn_detection")
    return {
        "id": session.get("id"), "object": "realtime.session", "modalities": session.get("output_modalities"),
        "instructions": session.get("instructions"), "voice": audio_out.get("voice"),
        "speed": audio_out.get("speed"), "input_audio_format": "pcm16", "output_audio_format": "pcm16",
        "input_audio_transcription": audio_in.get("transcription"), "input_audio_noise_reduction": None,
        "turn_detection": None if turn is None else {k: v for k, v in turn.items() if k != "idle_timeout_ms"},
        "tools": session.get("tools"), "tool_choice": session.get("tool_choice", "auto"),
        "max_response_output_tokens": session.get("max_output_tokens"), "tracing": None,
    }
