"""THE spoken turn: a conversation so far in, a streamed reply out, for every entry point (`stepaudio chat`,
real-time sessions, `/v1/chat/completions`, `eval chat`).

What reaches the chat model follows the engine's declared abilities. An engine that hears audio
(Step-Audio-Chat) gets the user's speech itself, plus any text of the same message, and needs no transcript
to answer. Other engines get the text and a transcript. A transcript is computed at most once per clip and
only where it is needed: to answer (engines that cannot hear), or when the caller asks for it (display,
text-based context) and then after the reply, off the path the listener waits on.

The chat model writes in its own thread while the sentences it has finished are spoken; tool calls go through
the one tool loop (run here when the caller gave the functions, handed out otherwise); everything comes out
as typed events, the last one `TurnDone`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, cast

from stepaudio.audio.io import Audio
from stepaudio.audio.vad import Trimmer
from stepaudio.engines.base import (
    AudioChunk,
    CancelToken,
    ChatDelta,
    ChatMessage,
    Engine,
    GenerationOptions,
    SpeakingChat,
    SpeechInstructions,
    ToolCall,
    ToolSpec,
    Transcriber,
    Usage,
    Voice,
)
from stepaudio.engines.tools import ToolRegistry, respond_with_tools
from stepaudio.errors import StepAudioError
from stepaudio.realtime.context import ContextStats, ConversationContext, TokenCounter, estimate_tokens
from stepaudio.text.sentences import SentenceSplitter

FinishReason = Literal["stop", "length", "tool_calls", "cancelled"]


# The first piece of a reply is cut this soon (at a space, or at its first clause mark): a voice renders a piece
# whole, so the first audio waits for the piece to be written and rendered. On a 2-core EPYC, 24 characters
# against 48 brought a lone lite session's first audio from 1.67 to 1.13 s (p50, LibriVox turns): ~6 fewer
# tokens to write and half the rendering, for a phrase break after the first words.
FIRST_SENTENCE_CHARS = 24


@dataclass(frozen=True)
class TurnSettings:
    """How a turn is answered. `tools` are declared to the model and their calls handed to the caller; with
    `registry` the calls are run here and the model asked again. `transcripts`: `needed` computes one only for
    engines that cannot hear; `always` also for those that can (display, text-based context)."""

    voice: Voice | str | None = None
    instructions: SpeechInstructions | None = None
    language: str | None = None
    options: GenerationOptions | None = None
    tools: tuple[ToolSpec, ...] = ()
    registry: ToolRegistry | None = None
    speak: bool = True
    transcripts: Literal["needed", "always"] = "needed"
    max_sentence_chars: int = 250
    first_sentence_chars: int = FIRST_SENTENCE_CHARS
    first_clause_chars: int | None = 4  # a Chinese/Japanese first sentence ends at its first clause mark after this
    first_clause_words: int | None = 1  # a spaced-script first sentence ends at its first , ; : after this many words
    max_tool_rounds: int = 4


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
class UserHeard:
    """The transcript of spoken message `index` (or why there is none)."""

    index: int
    text: str
    error: str | None = None


@dataclass(frozen=True)
class ReplyText:
    text: str


@dataclass(frozen=True)
class ReplyAudio:
    """Speech of the reply; `sentence` rides on the first chunk of each sentence."""

    chunk: AudioChunk
    sentence: str = ""


@dataclass(frozen=True)
class ToolCalled:
    call: ToolCall


@dataclass(frozen=True)
class ToolAnswered:
    """A tool the turn ran itself (with `TurnSettings.registry`) and its result, as the model will read it."""

    message: ChatMessage


@dataclass(frozen=True)
class TurnDone:
    """The end: the reply, why it ended, and `messages`, the turn's new messages in order (the user's with any
    transcript, tool rounds, the assistant's reply) for the caller's history."""

    reply: str
    finish_reason: FinishReason
    tool_calls: tuple[ToolCall, ...] = ()
    messages: tuple[ChatMessage, ...] = ()
    timings: TurnTimings = TurnTimings()
    usage: Usage | None = None  # the chat model's tokens over all rounds, where it reports them


TurnEvent = UserHeard | ReplyText | ReplyAudio | ToolCalled | ToolAnswered | TurnDone


@dataclass
class Transcripts:
    """Transcripts computed at most once per clip (keyed by the Audio object, held while cached)."""

    transcriber: Transcriber | None
    language: str | None = None
    limit: int = 64
    _texts: dict[int, tuple[Audio, str]] = field(default_factory=dict)

    def get(self, audio: Audio) -> str:
        key = id(audio)
        if key not in self._texts:
            if self.transcriber is None:
                raise StepAudioError("this engine has no speech recognizer and its chat model does not hear "
                                     "audio: send text, or use another engine")
            text = self.transcriber.transcribe(audio, language=self.language).text.strip()
            self._texts[key] = (audio, text)
            while len(self._texts) > self.limit:
                del self._texts[next(iter(self._texts))]
        return self._texts[key][1]

    def known(self, audio: Audio) -> str | None:
        entry = self._texts.get(id(audio))
        return entry[1] if entry is not None else None


def needs_transcriber(engine: Engine, messages: Sequence[ChatMessage], settings: TurnSettings) -> bool:
    """Whether answering these messages runs the recognizer (callers that lock engine parts ask first)."""
    spoken = [m for m in messages if m.audio is not None and m.transcript is None]
    if not spoken:
        return False
    return settings.transcripts == "always" or not engine.abilities.hears_audio


def run_turn(
    engine: Engine,
    messages: Sequence[ChatMessage],
    settings: TurnSettings = TurnSettings(),
    cancel: CancelToken | None = None,
    transcripts: Transcripts | None = None,
    trimmer: Trimmer | None = None,
) -> Iterator[TurnEvent]:
    """Answer the conversation `messages` (its last user message is the new turn), streaming events.

    `trimmer` cuts silence off the new spoken message first (a turn that was only silence ends at once).
    Errors of the engine propagate; a cancelled turn ends with finish reason `cancelled`.
    """
    start = time.perf_counter()
    if engine.chat is None:
        raise StepAudioError(f"engine {engine.name!r} has no chat model")
    transcripts = transcripts or Transcripts(engine.transcriber, settings.language)
    timings = TurnTimings()
    messages = list(messages)
    newest = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    if trimmer is not None and newest >= 0 and messages[newest].audio is not None:
        audio, spans = trimmer.trim(messages[newest].audio)  # type: ignore[arg-type]
        timings = replace(timings, vad=time.perf_counter() - start)
        if not spans and not messages[newest].content.strip():
            yield TurnDone("", "stop", timings=replace(timings, total=time.perf_counter() - start))
            return
        messages[newest] = replace(messages[newest], audio=audio if spans else None)
    hears = engine.abilities.hears_audio
    if not hears:  # it reads: every spoken message needs its words first
        for index, message in enumerate(messages):
            if message.audio is not None and message.transcript is None:
                heard = _transcribe(transcripts, index, message.audio)
                messages[index] = replace(message, transcript=heard.text)
                timings = replace(timings, asr=time.perf_counter() - start)
                yield heard
    if newest >= 0 and not _has_words(messages[newest], hears):
        yield TurnDone("", "stop",
                       timings=replace(timings, total=time.perf_counter() - start))
        return
    chat_messages = messages if hears else [_as_text(m) for m in messages]
    done: TurnDone | None = None
    for event in _answer(engine, chat_messages, settings, cancel, start):
        if isinstance(event, TurnDone):
            done = event
            break
        yield event
    assert done is not None
    new = _new_user_messages(messages)
    if hears and settings.transcripts == "always" and not (cancel is not None and cancel.cancelled):
        asr_start = time.perf_counter()
        for index in new:  # asked for display or text context: after the reply, off the waiting path
            message = messages[index]
            if message.audio is not None and message.transcript is None:
                heard = _transcribe(transcripts, index, message.audio)
                messages[index] = replace(message, transcript=heard.text if heard.error is None else None)
                yield heard
        timings = replace(timings, asr=time.perf_counter() - asr_start)
    yield replace(done, messages=(*(messages[i] for i in new), *done.messages),
                  timings=replace(done.timings, vad=timings.vad, asr=timings.asr,
                                  total=time.perf_counter() - start))


def _transcribe(transcripts: Transcripts, index: int, audio: Audio) -> UserHeard:
    try:
        return UserHeard(index, transcripts.get(audio))
    except StepAudioError:
        raise  # no recognizer at all: the caller must know
    except Exception as exc:  # this message's words are missing; the turn goes on
        return UserHeard(index, "", f"{type(exc).__name__}: {exc}")


def _new_user_messages(messages: Sequence[ChatMessage]) -> list[int]:
    """The indices of the trailing user messages: the turn being answered."""
    index = len(messages)
    while index > 0 and messages[index - 1].role == "user":
        index -= 1
    return list(range(index, len(messages)))


def _has_words(message: ChatMessage, hears: bool) -> bool:
    if message.content.strip() or (message.transcript or "").strip():
        return True
    return hears and message.audio is not None and message.audio.samples.size > 0


def reply_prompt(history: Sequence[ChatMessage], words: str) -> list[ChatMessage] | None:
    """What a chat model that cannot hear reads to answer `words` spoken after `history`, for reading it ahead
    (`PreparingChat.prepare`) while the turn is still spoken; None if an earlier spoken turn has no words yet."""
    if any(m.audio is not None and m.transcript is None for m in history):
        return None
    return [*(_as_text(m) for m in history), ChatMessage("user", words)]


def _as_text(message: ChatMessage) -> ChatMessage:
    if message.audio is None:
        return message
    return replace(message, content=message.text_for_reading(), audio=None, transcript=None)


def _answer(engine: Engine, messages: list[ChatMessage], settings: TurnSettings, cancel: CancelToken | None,
            start: float) -> Iterator[TurnEvent]:
    """Stream the reply (with tool rounds) and speak it: sentence by sentence through the synthesizer, or, for a
    model that speaks itself, its own speech as it comes (labelled with the text written since the last piece)."""
    assert engine.chat is not None
    token = cancel or CancelToken()  # ours is cancelled when the caller stops listening
    voice_cancel = cancel or CancelToken()  # speech stops only when the caller cancels
    itself = settings.speak and engine.abilities.speaks and settings.registry is None
    speak = settings.speak and engine.synthesizer is not None and not itself
    splitter = SentenceSplitter(settings.max_sentence_chars, settings.first_sentence_chars,
                                settings.first_clause_chars, settings.first_clause_words)
    stream: Iterator[ChatDelta | ChatMessage | AudioChunk]
    if itself:
        speaker = cast(SpeakingChat, engine.chat)  # declared by Abilities.speaks
        stream = iter(speaker.speak(messages, list(settings.tools) or None, settings.options, token, settings.voice))
    elif settings.registry is not None:
        registry = settings.registry
        if settings.tools:
            registry = replace(registry, specs=tuple(settings.tools) + tuple(registry.specs))
        stream = respond_with_tools(
            engine.chat, messages, registry, max_rounds=settings.max_tool_rounds, options=settings.options,
            cancel=token)
    else:
        stream = iter(engine.chat.respond(messages, list(settings.tools) or None, settings.options, token))
    first_token = first_audio = llm_total = None
    finish: FinishReason = "stop"
    text: list[str] = []  # the reply since the last tool round
    calls: list[ToolCall] = []
    kept: list[ChatMessage] = []
    usage: Usage | None = None
    unspoken = ""  # text the model wrote since its last piece of speech
    for item, produced in _generate_aside(stream, token.cancel if cancel is None else None):
        if item is None:
            llm_total = produced - start
            break
        if isinstance(item, AudioChunk):
            if item.samples.size and not voice_cancel.cancelled:
                first_audio = first_audio or time.perf_counter() - start
                yield ReplyAudio(item, unspoken.strip())
                unspoken = ""
            continue
        if isinstance(item, ChatMessage):  # a tool round the loop ran: the assistant's calls, then results
            if item.role == "assistant":
                text, calls = [], []
            else:
                yield ToolAnswered(item)
            kept.append(item)
            continue
        if item.usage is not None:
            usage = item.usage if usage is None else usage + item.usage
        for call in item.tool_calls:
            calls.append(call)
            yield ToolCalled(call)
        if item.finish_reason is not None:
            finish = item.finish_reason
        if not item.text:
            continue
        first_token = first_token or produced - start
        text.append(item.text)
        unspoken += item.text
        yield ReplyText(item.text)
        for sentence in splitter.push(item.text) if speak else ():
            for event in _speak(engine, sentence, settings, voice_cancel):
                first_audio = first_audio or time.perf_counter() - start
                yield event
    for sentence in splitter.finish() if speak else ():
        for event in _speak(engine, sentence, settings, voice_cancel):
            first_audio = first_audio or time.perf_counter() - start
            yield event
    if cancel is not None and cancel.cancelled:  # (our own token is cancelled on closing the stream)
        finish = "cancelled"
    elif calls and finish == "stop":
        finish = "tool_calls"
    reply = "".join(text).strip()
    if reply or calls:
        kept.append(ChatMessage("assistant", reply, tool_calls=tuple(calls)))
    yield TurnDone(reply, finish, tuple(calls), tuple(kept),
                   TurnTimings(llm_first_token=first_token, llm_total=llm_total, tts_first_audio=first_audio),
                   usage)


def _speak(engine: Engine, sentence: str, settings: TurnSettings, cancel: CancelToken) -> Iterator[ReplyAudio]:
    assert engine.synthesizer is not None
    label = sentence
    for chunk in engine.synthesizer.synthesize(sentence, settings.voice, settings.instructions, cancel):
        if cancel.cancelled:
            return
        if chunk.samples.size == 0:
            continue
        yield ReplyAudio(chunk, label)
        label = ""


def _generate_aside(
    items: Iterator[ChatDelta | ChatMessage | AudioChunk], on_close: Callable[[], None] | None
) -> Iterator[tuple[ChatDelta | ChatMessage | AudioChunk | None, float]]:
    """Run the chat stream in a thread, so it keeps writing while sentences are spoken; yields (item, time it
    was produced) and finally (None, time the reply was complete)."""
    pieces: queue.Queue[tuple[ChatDelta | ChatMessage | AudioChunk | BaseException | None, float]] = queue.Queue()
    done = threading.Event()

    def work() -> None:
        try:
            for item in items:
                pieces.put((item, time.perf_counter()))
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


@dataclass
class Conversation:
    """A multi-turn conversation over `engine` whose history is kept by the token-budget context manager:
    spoken turns are held as their transcript once known (text-based context), as audio until then."""

    engine: Engine
    settings: TurnSettings = TurnSettings()
    trimmer: Trimmer | None = None
    system_prompt: str = ""
    max_context_tokens: int = 4096
    count_tokens: TokenCounter = estimate_tokens
    context: ConversationContext = field(init=False)
    _transcripts: Transcripts = field(init=False)

    def __post_init__(self) -> None:
        self.context = ConversationContext(self.system_prompt, self.max_context_tokens, self.count_tokens)
        self._transcripts = Transcripts(self.engine.transcriber, self.settings.language)

    def turn(self, audio: Audio | None = None, text: str | None = None,
             cancel: CancelToken | None = None) -> Iterator[TurnEvent]:
        """Answer one user turn, spoken (`audio`), written (`text`) or both, and keep it in the history."""
        if audio is None and not (text or "").strip():
            raise StepAudioError("a turn needs audio or text")
        return self.send(ChatMessage("user", (text or "").strip(), audio=audio), cancel)

    def send(self, message: ChatMessage, cancel: CancelToken | None = None,
             keep_reply: bool = True) -> Iterator[TurnEvent]:
        """Answer a user message; its turn (and, with `keep_reply`, the reply) enters the history."""
        for event in run_turn(self.engine, [*self.context.messages(), message], self.settings, cancel,
                              self._transcripts, self.trimmer):
            if isinstance(event, TurnDone):
                for kept in event.messages:
                    if keep_reply or kept.role == "user":
                        self.context.add_message(kept)
            yield event

    def add(self, message: ChatMessage) -> None:
        """A turn from elsewhere (a dataset's reference answer, a system prompt)."""
        self.context.add_message(message)

    def reset(self) -> None:
        self.context.clear()

    def stats(self) -> ContextStats:
        return self.context.stats()
