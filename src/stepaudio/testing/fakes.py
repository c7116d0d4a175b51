"""Scripted doubles of an engine's parts for tests of what drives them (a spoken turn, a generation job, the
load bench's sessions): no model, every answer known in advance, every call recorded."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from stepaudio.audio.io import Audio
from stepaudio.engines.base import CancelToken, ChatDelta, ChatMessage, GenerationOptions, ToolSpec, Transcript

__all__ = ["CountingTranscriber", "ScriptedChat"]


class ScriptedChat:
    """A `ChatModel` that replies with fixed pieces, then `stop`, whatever it is asked; `seen` holds every prompt.
    With a `gate` it holds its last piece until the gate opens (`gate_opened`: whether it did within a minute)."""

    def __init__(self, pieces: list[str], gate: threading.Event | None = None) -> None:
        self.pieces, self.gate = pieces, gate
        self.seen: list[list[ChatMessage]] = []
        self.gate_opened: bool | None = None

    def respond(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None = None,
                options: GenerationOptions | None = None, cancel: CancelToken | None = None) -> Iterator[ChatDelta]:
        self.seen.append(list(messages))
        for index, piece in enumerate(self.pieces):
            if self.gate is not None and index == len(self.pieces) - 1:
                self.gate_opened = self.gate.wait(timeout=60)
            yield ChatDelta(text=piece)
        yield ChatDelta(finish_reason="stop")


class CountingTranscriber:
    """A `Transcriber` that hears only a clip's length ('heard 1.5 s') and counts its runs (`calls`); with `fail`
    every run raises, as a recognizer that is down."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def transcribe(self, audio: Audio, language: str | None = None) -> Transcript:
        self.calls += 1
        if self.fail:
            raise RuntimeError("recognizer down")
        return Transcript(f"heard {audio.duration:.1f} s")
