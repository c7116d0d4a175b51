"""Typed events into the real-time controller and the actions it decides.

Inputs come from three places: the client (audio, text, response.create/cancel, playback progress), the
clock (ticks) and the generation worker (transcripts, text, audio, done). Actions are either commands the
session executes (start or cancel a generation, edit the conversation context) or outputs for the client;
each output names the OpenAI Realtime (GA) server event it maps onto in `openai_type`, so the server layer
only serialises. Times called `*_ms` are positions in the input or output audio; `now` is the controller's
clock in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np

from stepaudio.engines.base import ToolCall

if TYPE_CHECKING:
    from stepaudio.realtime.state import ControllerConfig

ResponseStatus = Literal["completed", "cancelled", "failed", "incomplete"]


# ---------------------------------------------------------------- inputs: client and clock


@dataclass(frozen=True)
class AudioFrame:
    """`duration_ms` of input audio and its speech probability (None when no VAD runs: manual turns)."""

    duration_ms: int
    speech_prob: float | None = None


@dataclass(frozen=True)
class InputAudio:
    """Raw client audio (input_audio_buffer.append); the session turns it into `AudioFrame`s."""

    samples: np.ndarray = field(compare=False, repr=False)
    sample_rate: int = 16000


@dataclass(frozen=True)
class InputAudioCommit:
    """input_audio_buffer.commit: the buffered audio becomes a user item (manual turn taking)."""


@dataclass(frozen=True)
class InputAudioClear:
    """input_audio_buffer.clear."""


@dataclass(frozen=True)
class TextInput:
    """conversation.item.create with a user input_text part."""

    text: str


@dataclass(frozen=True)
class FunctionCallOutput:
    """conversation.item.create with a function_call_output: the result of a tool the model called."""

    call_id: str
    output: str


@dataclass(frozen=True)
class ResponseCreate:
    """response.create, optionally with this response's own instructions (system prompt) and modalities."""

    instructions: str | None = None
    modalities: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ResponseCancel:
    """response.cancel."""


@dataclass(frozen=True)
class PlaybackProgress:
    """The client has played the assistant item's audio up to `played_ms` (reported, not estimated)."""

    played_ms: float
    item_id: str | None = None


@dataclass(frozen=True)
class ItemTruncate:
    """conversation.item.truncate: the client stopped playback of `item_id` at `audio_end_ms`."""

    item_id: str
    audio_end_ms: float


@dataclass(frozen=True)
class ConfigUpdate:
    """session.update: new turn detection and modalities; an open speculation is dropped and speech in
    progress forgotten when turn detection changes."""

    config: ControllerConfig


@dataclass(frozen=True)
class Tick:
    """Time passed: lets playback finish and idle timeouts fire without other input."""


# ---------------------------------------------------------------- inputs: the generation worker


@dataclass(frozen=True)
class InputTranscribed:
    """The worker transcribed user item `item_id` up to `end_ms` of input audio."""

    item_id: str
    end_ms: int
    text: str
    error: str | None = None  # the transcriber failed; `text` is then empty


@dataclass(frozen=True)
class GenerationText:
    response_id: str
    text: str


@dataclass(frozen=True)
class GenerationAudio:
    """Synthesised audio; a non-empty `text` starts a new transcript segment (the sentence it says)."""

    response_id: str
    samples: np.ndarray = field(compare=False, repr=False)
    sample_rate: int
    text: str = ""

    @property
    def duration_ms(self) -> float:
        return 1000.0 * len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class GenerationToolCall:
    """The chat model called a tool (its arguments complete)."""

    response_id: str
    call: ToolCall


@dataclass(frozen=True)
class GenerationDone:
    response_id: str
    finish_reason: str = "stop"
    error: str | None = None


Event = (
    AudioFrame | InputAudioCommit | InputAudioClear | TextInput | FunctionCallOutput | ResponseCreate
    | ResponseCancel | PlaybackProgress | ItemTruncate | ConfigUpdate | Tick | InputTranscribed | GenerationText
    | GenerationAudio | GenerationToolCall | GenerationDone
)


# ---------------------------------------------------------------- actions: commands for the session


@dataclass(frozen=True)
class ItemSpan:
    """A user item whose text the worker must obtain: input audio [start_ms, end_ms), or known `text`."""

    item_id: str
    start_ms: int = 0
    end_ms: int = 0
    text: str | None = None


@dataclass(frozen=True)
class StartGeneration:
    """Transcribe `user_items` not yet in the context, then chat and synthesise. Speculative generations
    run before the end of the turn is confirmed; their output is held until committed."""

    response_id: str
    item_id: str
    user_items: tuple[ItemSpan, ...]
    speculative: bool
    modalities: tuple[str, ...] = ("audio",)
    instructions: str | None = None  # replaces the session's system prompt for this response


@dataclass(frozen=True)
class CancelGeneration:
    response_id: str


@dataclass(frozen=True)
class TranscribeItem:
    """Transcribe a user item now (manual commit), so its text is ready before a response."""

    span: ItemSpan


@dataclass(frozen=True)
class CommitSpeculation:
    """The silence was confirmed: the speculative generation becomes the response."""

    response_id: str
    window_ms: float  # time from the speculative start to the confirmation: the most it can save


@dataclass(frozen=True)
class DiscardSpeculation:
    """The user went on speaking: the speculative generation is cancelled and its output dropped."""

    response_id: str


@dataclass(frozen=True)
class AddUserTurn:
    """A user turn enters the context: as text, or (`span` set, no transcript) as the audio of that span."""

    item_id: str
    text: str
    audio_ms: float = 0.0
    span: ItemSpan | None = None


@dataclass(frozen=True)
class AddAssistantTurn:
    item_id: str
    text: str
    audio_ms: float = 0.0
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class AddToolResult:
    item_id: str
    call_id: str
    output: str


@dataclass(frozen=True)
class TruncateAssistantTurn:
    """Barge-in: keep only what the user heard of the assistant turn."""

    item_id: str
    text: str
    audio_ms: float


# ---------------------------------------------------------------- actions: outputs for the client


@dataclass(frozen=True)
class Output:
    openai_type: ClassVar[str]


@dataclass(frozen=True)
class SpeechStarted(Output):
    openai_type: ClassVar[str] = "input_audio_buffer.speech_started"
    item_id: str
    audio_start_ms: int


@dataclass(frozen=True)
class SpeechStopped(Output):
    openai_type: ClassVar[str] = "input_audio_buffer.speech_stopped"
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True)
class AudioCommitted(Output):
    openai_type: ClassVar[str] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None


@dataclass(frozen=True)
class BufferCleared(Output):
    openai_type: ClassVar[str] = "input_audio_buffer.cleared"


@dataclass(frozen=True)
class TimeoutTriggered(Output):
    openai_type: ClassVar[str] = "input_audio_buffer.timeout_triggered"
    audio_start_ms: int
    audio_end_ms: int


@dataclass(frozen=True)
class ItemAdded(Output):
    """conversation.item.added: a user item (audio or text) or the assistant's reply item."""

    openai_type: ClassVar[str] = "conversation.item.added"
    item_id: str
    role: Literal["user", "assistant", "tool"]
    previous_item_id: str | None
    content_type: Literal["input_audio", "input_text", "output_audio", "output_text", "function_call",
                          "function_call_output"]
    text: str = ""


@dataclass(frozen=True)
class InputTranscriptionCompleted(Output):
    openai_type: ClassVar[str] = "conversation.item.input_audio_transcription.completed"
    item_id: str
    transcript: str


@dataclass(frozen=True)
class InputTranscriptionFailed(Output):
    openai_type: ClassVar[str] = "conversation.item.input_audio_transcription.failed"
    item_id: str
    message: str


@dataclass(frozen=True)
class ItemTruncated(Output):
    openai_type: ClassVar[str] = "conversation.item.truncated"
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True)
class ResponseCreated(Output):
    openai_type: ClassVar[str] = "response.created"
    response_id: str
    item_id: str


@dataclass(frozen=True)
class OutputTextDelta(Output):
    openai_type: ClassVar[str] = "response.output_text.delta"
    response_id: str
    item_id: str
    delta: str


@dataclass(frozen=True)
class OutputTranscriptDelta(Output):
    openai_type: ClassVar[str] = "response.output_audio_transcript.delta"
    response_id: str
    item_id: str
    delta: str


@dataclass(frozen=True)
class OutputAudioDelta(Output):
    openai_type: ClassVar[str] = "response.output_audio.delta"
    response_id: str
    item_id: str
    samples: np.ndarray = field(compare=False, repr=False)
    sample_rate: int


@dataclass(frozen=True)
class FunctionCallArgumentsDone(Output):
    openai_type: ClassVar[str] = "response.function_call_arguments.done"
    response_id: str
    item_id: str
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class OutputTextDone(Output):
    openai_type: ClassVar[str] = "response.output_text.done"
    response_id: str
    item_id: str
    text: str


@dataclass(frozen=True)
class OutputTranscriptDone(Output):
    openai_type: ClassVar[str] = "response.output_audio_transcript.done"
    response_id: str
    item_id: str
    transcript: str


@dataclass(frozen=True)
class OutputAudioDone(Output):
    openai_type: ClassVar[str] = "response.output_audio.done"
    response_id: str
    item_id: str


@dataclass(frozen=True)
class ResponseDone(Output):
    openai_type: ClassVar[str] = "response.done"
    response_id: str
    item_id: str
    status: ResponseStatus
    reason: str | None = None


@dataclass(frozen=True)
class ErrorOutput(Output):
    openai_type: ClassVar[str] = "error"
    code: str
    message: str


Command = (
    StartGeneration | CancelGeneration | TranscribeItem | CommitSpeculation | DiscardSpeculation | AddUserTurn
    | AddAssistantTurn | AddToolResult | TruncateAssistantTurn
)
Action = Command | Output
