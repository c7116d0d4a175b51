"""The three engine interfaces (Transcriber, ChatModel, Synthesizer) and the values they exchange.

Every engine (`step`, `lite`, remote) implements these, so the CLI, the server, the real-time pipeline
and the evaluation suite never know which models answer. Synthesis and chat stream by default.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from stepaudio.audio.io import Audio

Role = Literal["system", "user", "assistant", "tool"]
Part = Literal["transcriber", "chat", "synthesizer"]


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    """`words` is filled only by `WordTranscriber.transcribe_words` (timing words costs extra decoding work)."""

    text: str
    language: str | None = None
    segments: tuple[Segment, ...] = ()
    duration: float = 0.0
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class ToolSpec:
    """A function the chat model may call: JSON-schema parameters, as in the OpenAI tools API."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass(frozen=True)
class ChatMessage:
    """One turn. `content` is what was written; `audio` the user's speech when the turn was spoken, and
    `transcript` what that speech says once known. An engine that hears audio gets `content` and `audio`;
    the others get `content` and `transcript` (`text_for_reading`)."""

    role: Role
    content: str = ""
    audio: Audio | None = None
    transcript: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def text_for_reading(self) -> str:
        """The message as text: what was written and, for speech, its transcript."""
        return "\n".join(part for part in (self.content.strip(), (self.transcript or "").strip()) if part)


@dataclass(frozen=True)
class Usage:
    """Tokens the model read (the whole prompt, audio tokens included) and wrote, as counted by the model."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of the prompt, found in a cache rather than read again (OpenAI's prompt_tokens_details)

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens,
                     self.cached_tokens + other.cached_tokens)


@dataclass(frozen=True)
class ChatDelta:
    """A piece of the reply: text as it is generated, finished tool calls, and at the end a finish reason with
    the token usage where the model reports it."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: Literal["stop", "length", "tool_calls", "cancelled"] | None = None
    usage: Usage | None = None


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 50
    seed: int | None = None


@dataclass(frozen=True)
class Voice:
    """A built-in speaker (`prompt_audio` None) or a clone from a prompt wav and its exact transcript."""

    name: str
    prompt_audio: Path | None = None
    prompt_text: str | None = None

    @property
    def is_clone(self) -> bool:
        return self.prompt_audio is not None


@dataclass(frozen=True)
class SpeechInstructions:
    """What the caller wants beyond the words. Friendly values ('happy', 'sichuanese', 'slow', 'rap') or
    raw tags; `speed` may also be a rate factor (1.0 = normal) applied after synthesis.

    An engine that cannot honour an instruction raises `TagError` naming it when `strict`, else warns.
    """

    emotion: str | None = None
    dialect: str | None = None
    speed: str | float | None = None
    style: str | None = None
    pitch: float | None = None  # semitones, where the engine supports it
    volume: float | None = None  # gain factor applied after synthesis
    tags: tuple[str, ...] = ()
    strict: bool = False


@dataclass(frozen=True)
class AudioChunk:
    """A piece of synthesised speech; `text` is what it says when known (a sentence for sentence streaming)."""

    samples: np.ndarray
    sample_rate: int
    text: str = ""
    is_last: bool = False

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


class CancelToken:
    """Shared flag a caller sets to stop a generation between steps (barge-in, client disconnect)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def event(self) -> threading.Event:
        """The underlying event, for loops that wait on it or check it (the LM token stream)."""
        return self._event


@runtime_checkable
class Transcriber(Protocol):
    def transcribe(self, audio: Audio, language: str | None = None) -> Transcript: ...


@runtime_checkable
class WordTranscriber(Transcriber, Protocol):
    """A transcriber that can also say when each word was spoken (Whisper: cross-attention alignment)."""

    def transcribe_words(self, audio: Audio, language: str | None = None) -> Transcript: ...


class TurnStream(Protocol):
    """What an engine part hears of one turn while it is spoken: `push` the turn's samples as they arrive (cheap,
    called under the caller's lock), `update` does the work due so far (from a thread nothing waits on; True if
    it did some)."""

    def push(self, samples: np.ndarray) -> None: ...

    def update(self) -> bool: ...


class TranscriptStream(TurnStream, Protocol):
    @property
    def final_text(self) -> str:
        """The words settled so far (later audio will not change them)."""
        ...

    @property
    def heard_text(self) -> str:
        """The settled words, then the newest hypothesis's others (later audio may still change those)."""
        ...

    def transcript(self, samples: int | None = None) -> Transcript:
        """The words of the first `samples` samples pushed (all when None): at the end of speech only what the
        updates have not settled is left to decode."""
        ...


@runtime_checkable
class StreamingTranscriber(Transcriber, Protocol):
    """A transcriber that recognises a turn while it is spoken (lite: Whisper re-decoding the growing turn);
    `listen` may return None when the engine is configured not to."""

    def listen(self, sample_rate: int, language: str | None = None) -> TranscriptStream | None: ...


class HeardStream(TurnStream, Protocol):
    def hear(self, audio: Audio) -> None:
        """`audio` is the first `audio.samples.size` samples pushed: what the chat model reads of it is made
        now (from what the updates prepared) and kept for when `audio` comes in a message."""
        ...


@runtime_checkable
class ListeningChat(Protocol):
    """A chat model that hears audio and can prepare its input while the user speaks (Step: the streaming audio
    tokenizer); `listen` may return None."""

    def listen(self, sample_rate: int) -> HeardStream | None: ...


@runtime_checkable
class PreparingChat(Protocol):
    """A chat model that can read a conversation's prompt ahead of the reply: while the user still speaks, the
    words settled so far are read, and the reply then reads only what is new. Best effort: it may be skipped."""

    def prepare(self, messages: Sequence[ChatMessage]) -> None: ...


@runtime_checkable
class ChatModel(Protocol):
    def respond(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec] | None = None,
        options: GenerationOptions | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[ChatDelta]: ...


class SpeakingChat(ChatModel, Protocol):
    """A chat model that speaks its reply itself in one pass (Step-Audio 2: text and speech tokens
    interleaved): text deltas and audio chunks, streamed together. Declared by `Abilities.speaks`."""

    def speak(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec] | None = None,
        options: GenerationOptions | None = None,
        cancel: CancelToken | None = None,
        voice: Voice | str | None = None,
    ) -> Iterator[ChatDelta | AudioChunk]: ...


@runtime_checkable
class Synthesizer(Protocol):
    sample_rate: int

    def voices(self) -> list[str]: ...

    def synthesize(
        self,
        text: str,
        voice: Voice | str | None = None,
        instructions: SpeechInstructions | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[AudioChunk]: ...


@dataclass(frozen=True)
class Abilities:
    """What an engine can do, declared by the engine so that callers decide up front instead of failing late.

    `hears_audio`: the chat model takes the user's speech itself (Step-Audio-Chat: interleaved audio tokens),
    so a spoken turn needs no transcript to be answered. `clones_voices`: the synthesizer speaks in a voice
    made from a prompt wav and its transcript. `tool_calls`: the chat model can call declared tools.
    `designs_voices`: the synthesizer speaks a weighted blend of its built-in voices, named by a formula such as
    `zh-yunjian*0.6+zh-xiaobei*0.4` wherever a voice name goes (a new voice, not a copy of anyone's).
    `edits_speech`: the synthesizer is also an `Editor` (engines/editx/editor.py): it changes the emotion, style,
    speed, paralinguistics, noise or silence of given speech one instruction at a time. `speaks`: the chat model
    is a `SpeakingChat`: a spoken reply comes from the model itself, not from the synthesizer reading its text.
    """

    hears_audio: bool = False
    clones_voices: bool = False
    tool_calls: bool = True
    designs_voices: bool = False
    edits_speech: bool = False
    speaks: bool = False


@dataclass(frozen=True)
class Engine:
    """A named set of the three capabilities (a missing one is None, e.g. a TTS-only engine), what they can do,
    the steps that load and warm them up (run by `warmup`, so the first request does not pay for them), and how
    many requests a part serves at once where that is more than one (a server gates each part by it)."""

    name: str
    transcriber: Transcriber | None
    chat: ChatModel | None
    synthesizer: Synthesizer | None
    abilities: Abilities = Abilities()
    warmups: tuple[tuple[Part, Callable[[], None]], ...] = ()
    concurrency: tuple[tuple[Part, int], ...] = ()  # requests a part serves at once, where more than one
    # how long a pause starts a speculative reply in real-time sessions (its output is held until the turn ends);
    # one thrown away costs a large model an encoder pass and a prefill, so they wait longer than small ones
    speculative_silence_ms: int = 200

    def warmup(self, *parts: Part) -> None:
        """Load and warm up the named parts (all when none is named)."""
        for part, step in self.warmups:
            if not parts or part in parts:
                step()
