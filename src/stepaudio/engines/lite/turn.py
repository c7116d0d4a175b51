"""One spoken turn through any engine: VAD -> ASR -> streamed chat -> sentence-by-sentence TTS.

The chat model generates in its own thread while this generator synthesizes the sentences it has so far,
so the first sentence is spoken while the rest is still being written. Every stage is timed from the
moment the user's speech is complete (the end of the recording), which is what a listener waits for.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from stepaudio.audio.io import Audio
from stepaudio.engines.base import (
    AudioChunk,
    CancelToken,
    ChatDelta,
    ChatMessage,
    Engine,
    GenerationOptions,
    SpeechInstructions,
    Voice,
)
from stepaudio.errors import StepAudioError
from stepaudio.text.sentences import SentenceSplitter


class Trimmer(Protocol):
    """Cuts leading and trailing silence; an empty span list means no speech was heard."""

    def trim(self, audio: Audio) -> tuple[Audio, list[Any]]: ...


@dataclass(frozen=True)
class TurnTimings:
    """Seconds from the end of the user's input; None for a stage that did not run."""

    vad: float | None = None
    asr: float | None = None
    llm_first_token: float | None = None
    llm_total: float | None = None
    tts_first_audio: float | None = None
    total: float = 0.0

    def rows(self) -> list[tuple[str, float | None]]:
        return [("VAD", self.vad), ("ASR", self.asr), ("LLM first token", self.llm_first_token),
                ("LLM total", self.llm_total), ("TTS first audio", self.tts_first_audio), ("total", self.total)]


@dataclass(frozen=True)
class TurnEvent:
    """`transcript` (what the user said), `text` (a reply delta), `audio` (a spoken sentence), `done`."""

    kind: Literal["transcript", "text", "audio", "done"]
    text: str = ""
    chunk: AudioChunk | None = None
    timings: TurnTimings | None = None


@dataclass
class Conversation:
    """A multi-turn voice conversation over `engine`; keeps the last `max_messages` messages as history."""

    engine: Engine
    vad: Trimmer | None = None
    voice: Voice | str | None = None
    instructions: SpeechInstructions | None = None
    language: str | None = None
    options: GenerationOptions = field(default_factory=GenerationOptions)
    max_messages: int = 12
    first_sentence_chars: int = 60
    history: list[ChatMessage] = field(default_factory=list)

    def turn(self, audio: Audio | None = None, text: str | None = None,
             cancel: CancelToken | None = None) -> Iterator[TurnEvent]:
        """Answer one user turn, spoken (`audio`) or typed (`text`), streaming events."""
        if self.engine.chat is None:
            raise StepAudioError(f"engine {self.engine.name!r} has no chat model")
        start = time.perf_counter()
        timings = TurnTimings()
        if audio is not None:
            text, timings = self._listen(audio, start, timings)
            yield TurnEvent("transcript", text=text)
        if not text or not text.strip():
            yield TurnEvent("done", timings=replace(timings, total=time.perf_counter() - start))
            return
        self.history.append(ChatMessage("user", text.strip()))
        reply: list[str] = []
        for event in self._answer(start, cancel):
            if event.kind == "text":
                reply.append(event.text)
            if event.kind == "done" and event.timings is not None:
                timings = replace(event.timings, vad=timings.vad, asr=timings.asr)
                event = replace(event, timings=timings)
            yield event
        self.history.append(ChatMessage("assistant", "".join(reply).strip()))
        del self.history[: max(0, len(self.history) - self.max_messages)]

    def _listen(self, audio: Audio, start: float, timings: TurnTimings) -> tuple[str, TurnTimings]:
        if self.engine.transcriber is None:
            raise StepAudioError(f"engine {self.engine.name!r} has no speech recognizer")
        if self.vad is not None:
            audio, spans = self.vad.trim(audio)
            timings = replace(timings, vad=time.perf_counter() - start)
            if not spans:
                return "", replace(timings, asr=0.0)
        transcript = self.engine.transcriber.transcribe(audio, language=self.language)
        return transcript.text, replace(timings, asr=time.perf_counter() - start)

    def _answer(self, start: float, cancel: CancelToken | None) -> Iterator[TurnEvent]:
        splitter = SentenceSplitter(first_max_chars=self.first_sentence_chars)
        first_token = first_audio = llm_total = None
        assert self.engine.chat is not None
        token = cancel or CancelToken()  # ours is cancelled when the caller stops listening
        deltas = self.engine.chat.respond(self.history, options=self.options, cancel=token)
        for delta, produced in _generate_aside(deltas, token.cancel if cancel is None else None):
            if delta is None:
                llm_total = produced - start
                break
            if not delta.text:
                continue
            first_token = first_token or produced - start
            yield TurnEvent("text", text=delta.text)
            for sentence in splitter.push(delta.text):
                for chunk in self._speak(sentence, cancel):
                    first_audio = first_audio or time.perf_counter() - start
                    yield TurnEvent("audio", text=sentence, chunk=chunk)
        for sentence in splitter.finish():
            for chunk in self._speak(sentence, cancel):
                first_audio = first_audio or time.perf_counter() - start
                yield TurnEvent("audio", text=sentence, chunk=chunk)
        yield TurnEvent("done", timings=TurnTimings(llm_first_token=first_token, llm_total=llm_total,
                                                     tts_first_audio=first_audio,
                                                     total=time.perf_counter() - start))

    def _speak(self, sentence: str, cancel: CancelToken | None) -> Iterator[AudioChunk]:
        if self.engine.synthesizer is None or (cancel and cancel.cancelled):
            return
        yield from self.engine.synthesizer.synthesize(sentence, self.voice, self.instructions, cancel)


def _generate_aside(
    deltas: Iterator[ChatDelta], on_close: Callable[[], None] | None
) -> Iterator[tuple[ChatDelta | None, float]]:
    """Run the chat generator in a thread, so it keeps writing while sentences are synthesized; yields
    (delta, time it was produced) and finally (None, time the reply was complete)."""
    pieces: queue.Queue[tuple[ChatDelta | BaseException | None, float]] = queue.Queue()
    done = threading.Event()

    def work() -> None:
        try:
            for delta in deltas:
                pieces.put((delta, time.perf_counter()))
                if done.is_set():
                    break
        except BaseException as exc:  # handed to the reader
            pieces.put((exc, time.perf_counter()))
        finally:
            pieces.put((None, time.perf_counter()))

    thread = threading.Thread(target=work, name="turn-chat", daemon=True)
    thread.start()
    try:
        while True:
            item, produced = pieces.get()
            if isinstance(item, BaseException):
                raise item
            yield item, produced
            if item is None:
                return
    finally:
        done.set()
        if on_close is not None:
            on_close()
        thread.join()
