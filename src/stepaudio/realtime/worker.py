"""The jobs the session runs off its event loop: transcribe user items, then chat and speak sentence by
sentence. Each job reports back through `post` as controller events and stops at the next step once its
cancel token is set. Transcripts are cached per (item, span end) so a restarted speculation or a response
after a manual commit does not transcribe twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
from stepaudio.errors import StepAudioError
from stepaudio.realtime import events as ev
from stepaudio.text.sentences import SentenceSplitter

Post = Callable[[ev.Event], None]


@dataclass(frozen=True)
class SpeechSettings:
    voice: Voice | str | None = None
    instructions: SpeechInstructions | None = None
    language: str | None = None
    options: GenerationOptions | None = None
    tools: tuple[ToolSpec, ...] = ()
    max_sentence_chars: int = 250
    first_sentence_chars: int = 80  # cut the first sentence sooner: the first audio comes earlier


@dataclass
class TranscriptCache:
    """Only the worker thread touches it; the oldest entries go beyond `limit`."""

    texts: dict[tuple[str, int], str] = field(default_factory=dict)
    limit: int = 64

    def get_or_transcribe(self, engine: Engine, span: ev.ItemSpan, audio: Audio | None, language: str | None,
                          post: Post) -> str:
        if span.text is not None:
            return span.text
        key = (span.item_id, span.end_ms)
        if key not in self.texts:
            try:
                text = _transcribe(engine, audio, language)
            except Exception as exc:  # reported on the item; the turn goes on without its words
                post(ev.InputTranscribed(span.item_id, span.end_ms, "", f"{type(exc).__name__}: {exc}"))
                return ""
            self.texts[key] = text
            while len(self.texts) > self.limit:
                del self.texts[next(iter(self.texts))]
            post(ev.InputTranscribed(span.item_id, span.end_ms, text))
        return self.texts[key]


def _transcribe(engine: Engine, audio: Audio | None, language: str | None) -> str:
    if audio is None or audio.samples.size == 0:
        return ""
    if engine.transcriber is None:
        raise StepAudioError(f"engine {engine.name!r} has no transcriber: send text, or use another engine")
    return engine.transcriber.transcribe(audio, language=language).text.strip()


def run_transcription(engine: Engine, cache: TranscriptCache, span: ev.ItemSpan, audio: Audio | None,
                      settings: SpeechSettings, post: Post) -> None:
    cache.get_or_transcribe(engine, span, audio, settings.language, post)


def run_generation(
    engine: Engine,
    cache: TranscriptCache,
    command: ev.StartGeneration,
    history: Sequence[ChatMessage],
    audio: dict[str, Audio],
    settings: SpeechSettings,
    cancel: CancelToken,
    post: Post,
) -> None:
    """Transcribe the new user items, stream the reply, speak it sentence by sentence, then post done."""
    rid = command.response_id
    try:
        messages = list(history)
        for span in command.user_items:
            text = cache.get_or_transcribe(engine, span, audio.get(span.item_id), settings.language, post)
            if text:
                messages.append(ChatMessage("user", text))
            if cancel.cancelled:
                return
        if command.user_items and len(messages) == len(history):
            post(ev.GenerationDone(rid, "stop"))  # the turn was noise: nothing was said, nothing to answer
            return
        if engine.chat is None:
            post(ev.GenerationDone(rid, "stop", f"engine {engine.name!r} has no chat model"))
            return
        speak = "audio" in command.modalities and engine.synthesizer is not None
        splitter = SentenceSplitter(settings.max_sentence_chars, settings.first_sentence_chars)
        finish = "stop"
        tools = list(settings.tools) or None
        for delta in engine.chat.respond(messages, tools=tools, options=settings.options, cancel=cancel):
            if cancel.cancelled:
                return
            for call in delta.tool_calls:
                post(ev.GenerationToolCall(rid, call))
            if delta.text:
                post(ev.GenerationText(rid, delta.text))
                if speak:
                    for sentence in splitter.push(delta.text):
                        if not _speak(engine, sentence, settings, cancel, rid, post):
                            return
            if delta.finish_reason is not None:
                finish = delta.finish_reason
        for sentence in splitter.finish() if speak else []:
            if not _speak(engine, sentence, settings, cancel, rid, post):
                return
        if not cancel.cancelled:
            post(ev.GenerationDone(rid, "stop" if finish == "cancelled" else finish))
    except Exception as exc:  # the worker must report, not die: the client is waiting on response.done
        if not cancel.cancelled:
            post(ev.GenerationDone(rid, "stop", f"{type(exc).__name__}: {exc}"))


def _speak(engine: Engine, sentence: str, settings: SpeechSettings, cancel: CancelToken, rid: str,
           post: Post) -> bool:
    """Synthesise one sentence; its text rides on the first chunk. False once cancelled."""
    assert engine.synthesizer is not None
    text = sentence
    for chunk in engine.synthesizer.synthesize(sentence, settings.voice, settings.instructions, cancel=cancel):
        if cancel.cancelled:
            return False
        samples = np.asarray(chunk.samples, dtype=np.float32).reshape(-1)
        if samples.size == 0:
            continue
        post(ev.GenerationAudio(rid, samples, chunk.sample_rate, text))
        text = ""
    return not cancel.cancelled
