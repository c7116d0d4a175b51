"""Pydantic models of the OpenAI-compatible requests and responses: validation at the edge only.

Field names and shapes follow the OpenAI API so that its clients work unchanged; the extensions (instruction
options for speech, a transcript for voice cloning) are extra optional fields such clients send through
`extra_body`. Unknown fields are ignored, as other OpenAI-compatible servers do.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Text = Annotated[str, Field(max_length=1_000_000)]
ShortText = Annotated[str, Field(max_length=256)]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class VoiceRef(_Lenient):
    id: ShortText


VoiceParam = ShortText | VoiceRef


class SpeechRequest(_Lenient):
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


class Message(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[ContentPart] | None = None
    name: ShortText | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: ShortText | None = None
    audio: AssistantAudioRef | None = None


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


class ChatRequest(_Lenient):
    model: ShortText = "stepaudio"
    messages: Annotated[list[Message], Field(min_length=1)]
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    audio: AudioOutput | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    seed: int | None = None
    n: Annotated[int, Field(ge=1, le=1)] = 1


# Responses -----------------------------------------------------------------------------------------------


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
    type: Literal["audio_sample", "builtin"] = "audio_sample"
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
