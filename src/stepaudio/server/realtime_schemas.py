"""Pydantic models of the OpenAI Realtime client events we accept: validation at the WebSocket edge.

Shapes follow the GA API (`session.audio.input.turn_detection`, `output_modalities`, ...); the beta names of
the same settings (`modalities`, `voice`, `turn_detection`, `input_audio_transcription`, `pcm16` formats,
`max_response_output_tokens`) are accepted too and folded into the GA shape before validation, whichever
interface the client connected with. Unknown fields are ignored, as clients echo whole session objects back;
unknown event types and unsupported values (another audio format, semantic_vad, a transcription session) are
refused with a clear `error` event.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

ShortText = Annotated[str, Field(max_length=256)]
LongText = Annotated[str, Field(max_length=100_000)]
Modalities = Annotated[list[Literal["audio", "text"]], Field(min_length=1, max_length=2)]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AudioFormat(_Lenient):
    type: Literal["audio/pcm"] = "audio/pcm"
    rate: Literal[24000] = 24000


class ServerVad(_Lenient):
    type: Literal["server_vad"] = "server_vad"
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    prefix_padding_ms: Annotated[int, Field(ge=0, le=10_000)] = 300
    silence_duration_ms: Annotated[int, Field(ge=0, le=10_000)] = 500
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: Annotated[int, Field(ge=5_000, le=30_000)] | None = None


class Transcription(_Lenient):
    model: ShortText | None = None
    language: ShortText | None = None
    prompt: LongText | None = None


class AudioInput(_Lenient):
    format: AudioFormat | None = None
    turn_detection: ServerVad | None = None
    transcription: Transcription | None = None


class AudioOutput(_Lenient):
    format: AudioFormat | None = None
    voice: ShortText | None = None
    speed: Annotated[float, Field(ge=0.25, le=4.0)] | None = None


class AudioConfig(_Lenient):
    input: AudioInput | None = None
    output: AudioOutput | None = None


class FunctionTool(_Lenient):
    type: Literal["function"] = "function"
    name: Annotated[str, Field(min_length=1, max_length=64)]
    description: Annotated[str, Field(max_length=4096)] = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


# beta session field -> (GA path); the beta audio formats name only the format itself
_BETA_SESSION = {"modalities": ("output_modalities",), "max_response_output_tokens": ("max_output_tokens",),
                 "voice": ("audio", "output", "voice"), "speed": ("audio", "output", "speed"),
                 "output_audio_format": ("audio", "output", "format"),
                 "input_audio_format": ("audio", "input", "format"),
                 "turn_detection": ("audio", "input", "turn_detection"),
                 "input_audio_transcription": ("audio", "input", "transcription")}
_BETA_FORMATS = {"pcm16": {"type": "audio/pcm", "rate": 24000}}


def _fold_beta(data: Any, names: dict[str, tuple[str, ...]]) -> Any:
    """`data` with its beta field names moved to their GA places (a GA field given as well wins)."""
    if not isinstance(data, dict) or not any(key in data for key in names):
        return data
    out = {key: value for key, value in data.items() if key not in names}
    for key, path in names.items():
        if key not in data:
            continue
        value = data[key]
        if key.endswith("audio_format") and isinstance(value, str):
            value = _BETA_FORMATS.get(value, {"type": value})  # anything but pcm16 is refused by AudioFormat
        node = out
        for part in path[:-1]:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node.setdefault(path[-1], value)
    return out


class SessionFields(_Lenient):
    """The session object of session.update; a field left out keeps its value."""

    type: Literal["realtime"] = "realtime"
    instructions: LongText | None = None
    output_modalities: Modalities | None = None
    audio: AudioConfig | None = None
    tools: Annotated[list[FunctionTool], Field(max_length=128)] | None = None
    max_output_tokens: Annotated[int, Field(ge=1, le=4096)] | Literal["inf"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _beta_names(cls, data: Any) -> Any:
        return _fold_beta(data, _BETA_SESSION)


class SessionUpdate(_Lenient):
    type: Literal["session.update"]
    event_id: ShortText | None = None
    session: SessionFields


class AudioAppend(_Lenient):
    type: Literal["input_audio_buffer.append"]
    event_id: ShortText | None = None
    audio: str  # base64 PCM16; its size is bounded by the message size limit


class AudioCommit(_Lenient):
    type: Literal["input_audio_buffer.commit"]
    event_id: ShortText | None = None


class AudioClear(_Lenient):
    type: Literal["input_audio_buffer.clear"]
    event_id: ShortText | None = None


class TextContent(_Lenient):
    type: Literal["input_text"]
    text: LongText


class MessageItem(_Lenient):
    type: Literal["message"]
    role: Literal["user", "system", "assistant"]
    content: Annotated[list[TextContent], Field(min_length=1, max_length=16)]


class FunctionOutputItem(_Lenient):
    type: Literal["function_call_output"]
    call_id: ShortText
    output: LongText


class ItemCreate(_Lenient):
    type: Literal["conversation.item.create"]
    event_id: ShortText | None = None
    previous_item_id: ShortText | None = None
    item: Annotated[MessageItem | FunctionOutputItem, Field(discriminator="type")]


class ItemTruncate(_Lenient):
    type: Literal["conversation.item.truncate"]
    event_id: ShortText | None = None
    item_id: ShortText
    content_index: Annotated[int, Field(ge=0, le=0)] = 0
    audio_end_ms: Annotated[int, Field(ge=0)]


class ResponseFields(_Lenient):
    instructions: LongText | None = None
    output_modalities: Modalities | None = None
    conversation: Literal["auto"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _beta_names(cls, data: Any) -> Any:
        return _fold_beta(data, {"modalities": ("output_modalities",)})


class ResponseCreate(_Lenient):
    type: Literal["response.create"]
    event_id: ShortText | None = None
    response: ResponseFields | None = None


class ResponseCancel(_Lenient):
    type: Literal["response.cancel"]
    event_id: ShortText | None = None
    response_id: ShortText | None = None


class OutputAudioClear(_Lenient):
    """Stop the audio being sent (the reply is cancelled); answered with output_audio_buffer.cleared."""

    type: Literal["output_audio_buffer.clear"]
    event_id: ShortText | None = None


ClientEvent = Annotated[
    SessionUpdate | AudioAppend | AudioCommit | AudioClear | ItemCreate | ItemTruncate | ResponseCreate
    | ResponseCancel | OutputAudioClear,
    Field(discriminator="type"),
]
CLIENT_EVENTS = TypeAdapter(ClientEvent)
EVENT_TYPES = ("session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
               "input_audio_buffer.clear", "conversation.item.create", "conversation.item.truncate",
               "response.create", "response.cancel", "output_audio_buffer.clear")
