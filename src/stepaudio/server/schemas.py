"""Pydantic models of the OpenAI-compatible requests and responses: validation at the edge only.

Field names and shapes follow the OpenAI API so that its clients work unchanged; the extensions (instruction
options for speech, a transcript for voice cloning) are extra optional fields such clients send through
`extra_body`. Unknown fields are ignored, as other OpenAI-compatible servers do.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

Text = Annotated[str, Field(max_length=1_000_000)]
ShortText = Annotated[str, Field(max_length=256)]


def _integral(value: Any) -> Any:
    """JSON Schema counts 6026.0 as an integer; strict pydantic would not."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


INTEGRAL = BeforeValidator(_integral)  # after any Field constraints, or their JSON schema is lost


class _Lenient(BaseModel):
    """Unknown fields are ignored; known ones take only their JSON type (no "1" for 1, no 0 for false), as the
    schema says."""

    model_config = ConfigDict(extra="ignore", strict=True)


def _present(field: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON-schema condition: `field` is present and matches `schema`."""
    return {"properties": {field: schema}, "required": [field]}


class VoiceRef(_Lenient):
    id: ShortText


VoiceParam = ShortText | VoiceRef


# Server-sent events carry raw samples: the speech route refuses `sse` with a container format (400).
SPEECH_RULES: tuple[dict[str, Any], ...] = (
    {"if": _present("stream_format", {"const": "sse"}), "then": _present("response_format", {"enum": ["pcm", "wav"]})},
)


class SpeechRequest(_Lenient):
    model_config = ConfigDict(extra="ignore", strict=True, json_schema_extra={"allOf": list(SPEECH_RULES)})

    model: ShortText = "tts-1"
    input: Annotated[str, Field(min_length=1, max_length=100_000)]
    voice: VoiceParam | None = None
    instructions: Annotated[str, Field(max_length=4096)] | None = None
    speed: Annotated[float, Field(ge=0.25, le=4.0)] = 1.0
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    stream_format: Literal["sse", "audio"] = "audio"
    # Extensions: instruction options (friendly values or raw tags) and strict tag checking.
    emotion: ShortText | None = None
    dialect: ShortText | None = None
    style: ShortText | None = None
    tags: Annotated[list[ShortText], Field(max_length=16)] | None = None
    strict: bool = False
    pitch: Annotated[float, Field(ge=-24.0, le=24.0)] | None = None
    volume: Annotated[float, Field(ge=0.0, le=4.0)] | None = None


class TextPart(_Lenient):
    type: Literal["text"]
    text: Text


class InputAudio(_Lenient):
    data: Annotated[str, Field(max_length=200_000_000)]
    format: Literal["wav", "mp3", "flac", "ogg", "opus", "pcm16"] = "wav"


class AudioPart(_Lenient):
    type: Literal["input_audio"]
    input_audio: InputAudio


ContentPart = Annotated[TextPart | AudioPart, Field(discriminator="type")]


class FunctionCallIn(_Lenient):
    name: ShortText
    arguments: Text = "{}"


class ToolCallIn(_Lenient):
    id: ShortText
    type: Literal["function"] = "function"
    function: FunctionCallIn


class AssistantAudioRef(_Lenient):
    id: ShortText


class SystemMessage(_Lenient):
    role: Literal["system", "developer"]
    content: Text | list[TextPart] | None = None
    name: ShortText | None = None


class UserMessage(_Lenient):
    """The only role whose content may carry `input_audio`."""

    role: Literal["user"]
    content: Text | list[ContentPart] | None = None
    name: ShortText | None = None


class AssistantMessage(_Lenient):
    role: Literal["assistant"]
    content: Text | list[TextPart] | None = None
    name: ShortText | None = None
    tool_calls: list[ToolCallIn] | None = None
    audio: AssistantAudioRef | None = None


class ToolMessage(_Lenient):
    role: Literal["tool"]
    content: Text | list[TextPart] | None = None
    name: ShortText | None = None
    tool_call_id: Annotated[str, Field(min_length=1, max_length=256)]


Message = Annotated[SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")]
# A conversation needs a turn besides the system prompt: at least one message in one of these roles.
TURN_ROLES = ("user", "assistant", "tool")


class FunctionSpec(_Lenient):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
    description: Annotated[str, Field(max_length=4096)] = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class Tool(_Lenient):
    type: Literal["function"] = "function"
    function: FunctionSpec


class AudioOutput(_Lenient):
    voice: VoiceParam
    format: Literal["wav", "mp3", "flac", "opus", "pcm16", "aac"] = "wav"


class StreamOptions(_Lenient):
    include_usage: bool = False


# Cross-field rules the chat route enforces (400 otherwise), stated in its schema: `audio` and `"audio"` in
# `modalities` go together, and streamed audio is pcm16.
_AUDIO_OBJECT = _present("audio", {"type": "object"})
_SPEAKS = _present("modalities", {"type": "array", "contains": {"const": "audio"}})
CHAT_RULES: tuple[dict[str, Any], ...] = (
    {"if": _AUDIO_OBJECT, "then": _SPEAKS},
    {"if": _SPEAKS, "then": _AUDIO_OBJECT},
    {"if": _present("stream", {"const": True}),
     "then": {"properties": {"audio": {"anyOf": [{"type": "null"}, _present("format", {"const": "pcm16"})]}}}},
)


class ChatRequest(_Lenient):
    model_config = ConfigDict(extra="ignore", strict=True, json_schema_extra={"allOf": list(CHAT_RULES)})

    model: ShortText = "stepaudio"
    messages: Annotated[list[Message], Field(
        min_length=1, json_schema_extra={"contains": {"properties": {"role": {"enum": list(TURN_ROLES)}}}})]
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    audio: AudioOutput | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1), INTEGRAL] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1), INTEGRAL] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    seed: Annotated[int, INTEGRAL] | None = None
    n: Annotated[int, Field(ge=1, le=1), INTEGRAL] = 1


# Responses -----------------------------------------------------------------------------------------------


def sse_content() -> dict[str, Any]:
    """The `text/event-stream` media type of a route's 200; in OpenAPI 3.1 its schema describes one event."""
    return {"text/event-stream": {"schema": {
        "type": "object", "required": ["data"],
        "properties": {"data": {"type": "string", "description": "JSON, or [DONE] at the end of a chat stream"},
                       "event": {"type": "string"}}}}}


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "stepaudio"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class VoiceCard(BaseModel):
    id: str
    object: Literal["audio.voice"] = "audio.voice"
    name: str
    type: Literal["audio_sample", "builtin", "blend"] = "audio_sample"
    created_at: int
    transcript: str | None = None
    duration: float | None = None


class VoiceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VoiceCard]


class VoiceDeleted(BaseModel):
    id: str
    object: Literal["audio.voice.deleted"] = "audio.voice.deleted"
    deleted: bool = True


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    engine: str
    capabilities: dict[str, bool]
    voices: int


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """The body of every error the server sends (errors.py)."""

    error: ErrorInfo


class FunctionCallOut(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class AudioOut(BaseModel):
    id: str
    data: str
    expires_at: int
    transcript: str


class AssistantOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallOut] | None = None
    audio: AudioOut | None = None


class Choice(BaseModel):
    index: int
    message: AssistantOut
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: None = None


class ChatUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """A whole (not streamed) chat completion."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: ChatUsage | None = None


class DurationUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float


class Transcription(BaseModel):
    """`response_format` json."""

    text: str
    usage: DurationUsage


class TranscriptionSegment(BaseModel):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class TranscriptionWord(BaseModel):
    word: str
    start: float
    end: float


class TranscriptionVerbose(BaseModel):
    """`response_format` verbose_json; `words` with timestamp_granularities word (then `segments` only when
    segment was asked for too)."""

    task: Literal["transcribe"] = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[TranscriptionSegment] | None = None
    words: list[TranscriptionWord] | None = None
    usage: DurationUsage
