"""The jobs a real-time session runs off its event loop, as controller events: a response is one spoken turn
(`realtime.turn.run_turn`), reported as it streams; a lone transcription answers `TranscribeItem`.

Each job stops at the next step once its cancel token is set. Transcripts are kept per clip by the
session's `Transcripts` (the session hands the same clip object for the same span), so a restarted
speculation or a response after a manual commit does not transcribe twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from stepaudio.audio.io import Audio
from stepaudio.engines.base import (
    CancelToken,
    ChatMessage,
    Engine,
    GenerationOptions,
    SpeechInstructions,
    ToolSpec,
    Voice,
)
from stepaudio.realtime import events as ev
from stepaudio.realtime.turn import (
    FIRST_SENTENCE_CHARS,
    ReplyAudio,
    ReplyText,
    ToolCalled,
    Transcripts,
    TurnDone,
    TurnSettings,
    UserHeard,
    run_turn,
)

Post = Callable[[ev.Event], None]


@dataclass(frozen=True)
class SpeechSettings:
    """The session's side of a turn; `transcribe` asks for transcripts even where the engine hears audio."""

    voice: Voice | str | None = None
    instructions: SpeechInstructions | None = None
    language: str | None = None
    options: GenerationOptions | None = None
    tools: tuple[ToolSpec, ...] = ()
    transcribe: bool = True
    max_sentence_chars: int = 250
    first_sentence_chars: int = FIRST_SENTENCE_CHARS

    def turn(self, modalities: Sequence[str]) -> TurnSettings:
        return TurnSettings(self.voice, self.instructions, self.language, self.options, self.tools,
                            speak="audio" in modalities, transcripts="always" if self.transcribe else "needed",
                            max_sentence_chars=self.max_sentence_chars,
                            first_sentence_chars=self.first_sentence_chars)


def run_transcription(transcripts: Transcripts, span: ev.ItemSpan, audio: Audio | None, post: Post) -> None:
    """Answer a `TranscribeItem`: the item's words, or why there are none."""
    text, error = "", None
    if audio is not None and audio.samples.size:
        try:
            text = transcripts.get(audio)
        except Exception as exc:  # reported on the item; the conversation goes on without its words
            error = f"{type(exc).__name__}: {exc}"
    post(ev.InputTranscribed(span.item_id, span.end_ms, text, error))


def run_generation(
    engine: Engine,
    transcripts: Transcripts,
    command: ev.StartGeneration,
    history: Sequence[ChatMessage],
    audio: dict[str, Audio],
    settings: SpeechSettings,
    cancel: CancelToken,
    post: Post,
) -> None:
    """Answer the new user items after `history` as one turn, posting its text, audio, calls and end."""
    rid = command.response_id
    try:
        messages = list(history)
        spans: dict[int, ev.ItemSpan] = {}
        for span in command.user_items:
            clip = audio.get(span.item_id)
            if span.text is not None:
                messages.append(ChatMessage("user", span.text))
            elif clip is not None:
                known = transcripts.known(clip)
                spans[len(messages)] = span
                messages.append(ChatMessage("user", "", audio=clip, transcript=known))
            else:  # no audio left for it: nothing was said
                post(ev.InputTranscribed(span.item_id, span.end_ms, ""))
        if command.user_items and len(messages) == len(history):
            post(ev.GenerationDone(rid, "stop"))  # the turn was noise: nothing was said, nothing to answer
            return
        if engine.chat is None:
            post(ev.GenerationDone(rid, "stop", f"engine {engine.name!r} has no chat model"))
            return
        finish = "stop"
        turn = run_turn(engine, messages, settings.turn(command.modalities), cancel, transcripts)
        for event in turn:
            if cancel.cancelled:
                return  # (the turn's generator is closed with it: its chat thread stops)
            match event:
                case UserHeard(index=index, text=text, error=error) if index in spans:
                    post(ev.InputTranscribed(spans[index].item_id, spans[index].end_ms, text, error))
                case ReplyText(text=text):
                    post(ev.GenerationText(rid, text))
                case ReplyAudio(chunk=chunk, sentence=sentence):
                    samples = np.asarray(chunk.samples, dtype=np.float32).reshape(-1)
                    post(ev.GenerationAudio(rid, samples, chunk.sample_rate, sentence))
                case ToolCalled(call=call):
                    post(ev.GenerationToolCall(rid, call))
                case TurnDone(finish_reason=reason):
                    finish = "stop" if reason == "cancelled" else reason
        if not cancel.cancelled:
            post(ev.GenerationDone(rid, finish))
    except Exception as exc:  # the worker must report, not die: the client is waiting on response.done
        if not cancel.cancelled:
            post(ev.GenerationDone(rid, "stop", f"{type(exc).__name__}: {exc}"))
