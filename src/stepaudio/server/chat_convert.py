"""Chat request to engine values: messages (text and input audio), tools and generation options, with caps.

Caps apply before any work: the number of messages, the characters of all text, and the seconds of all
input audio. Base64 audio is decoded with its byte size checked first, and its duration from its container
header (or, for `pcm16`, 24 kHz mono 16-bit as in the OpenAI API, from its length) before it is decoded.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import numpy as np

from stepaudio.audio.io import Audio, from_pcm16, load_audio, resample
from stepaudio.engines.base import ChatMessage, GenerationOptions, Role, ToolCall, ToolSpec
from stepaudio.errors import AudioError
from stepaudio.server.errors import ApiError
from stepaudio.server.schemas import (
    TURN_ROLES,
    AssistantMessage,
    AudioPart,
    ChatRequest,
    Message,
    TextPart,
    ToolMessage,
)
from stepaudio.server.settings import ServerSettings

PCM16_RATE = 24000


def base64_chars(size: int) -> int:
    """The length of `size` bytes in padded base64: the longest `input_audio.data` an upload limit admits
    (the schema's maxLength says the same)."""
    return 4 * -(-size // 3)


@dataclass(frozen=True)
class ConvertedChat:
    messages: list[ChatMessage]
    tools: list[ToolSpec] | None
    options: GenerationOptions


def convert_request(request: ChatRequest, settings: ServerSettings) -> ConvertedChat:
    """Blocking (decodes audio): call it from a worker thread."""
    if len(request.messages) > settings.max_chat_messages:
        raise ApiError(413, f"{len(request.messages)} messages; at most {settings.max_chat_messages} are allowed",
                       code="too_many_messages", param="messages")
    if all(m.role not in TURN_ROLES for m in request.messages):
        raise ApiError(400, "messages need at least one user, assistant or tool turn after the system prompt",
                       code="invalid_value", param="messages")
    budget = _Budget(settings)
    messages = [_message(m, i, budget) for i, m in enumerate(request.messages)]
    tools = None
    if request.tools and request.tool_choice != "none":
        tools = [ToolSpec(t.function.name, t.function.description, t.function.parameters) for t in request.tools]
    return ConvertedChat(messages, tools, generation_options(request, settings))


def generation_options(request: ChatRequest, settings: ServerSettings) -> GenerationOptions:
    defaults = GenerationOptions()
    wanted = request.max_completion_tokens or request.max_tokens or defaults.max_new_tokens
    return GenerationOptions(
        max_new_tokens=min(wanted, settings.max_new_tokens),
        temperature=defaults.temperature if request.temperature is None else request.temperature,
        top_p=defaults.top_p if request.top_p is None else request.top_p,
        seed=request.seed,
    )


class _Budget:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.chars = 0
        self.seconds = 0.0

    def text(self, text: str) -> str:
        self.chars += len(text)
        if self.chars > self.settings.max_chat_text_chars:
            raise ApiError(413, f"the messages hold more than {self.settings.max_chat_text_chars} characters",
                           code="context_too_long", param="messages")
        return text

    def audio(self, part: AudioPart, where: str) -> Audio:
        encoded = part.input_audio.data
        limit = self.settings.max_upload_bytes
        if len(encoded) > base64_chars(limit):
            raise ApiError(413, f"{where}: the audio is larger than the {limit} bytes allowed",
                           code="file_too_large", param=where)
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, f"{where}: input_audio.data is not valid base64", code="invalid_audio",
                           param=where) from None
        remaining = self.settings.max_chat_audio_seconds - self.seconds
        if part.input_audio.format == "pcm16":  # its length is its byte count: checked before converting
            seconds = len(raw) / 2 / PCM16_RATE
            if seconds > remaining:
                raise AudioError(f"{where}: the pcm16 audio lasts {seconds:.1f} s, longer than the "
                                 f"{max(remaining, 0.0):g} s of chat audio left")
            audio = load_audio(from_pcm16(raw), source_rate=PCM16_RATE, max_seconds=remaining)
        else:
            audio = load_audio(raw, max_seconds=remaining, max_bytes=limit)
        self.seconds += audio.duration
        return audio


def _message(message: Message, index: int, budget: _Budget) -> ChatMessage:
    """The message's role decides what it may hold (schemas.py): only user messages carry input_audio, only
    tool messages (and always) a tool_call_id, only assistant messages tool calls."""
    where = f"messages.{index}"
    role: Role = "system" if message.role == "developer" else message.role
    texts: list[str] = []
    clips: list[Audio] = []
    if isinstance(message.content, str):
        texts.append(budget.text(message.content))
    elif message.content is not None:
        for part in message.content:
            if isinstance(part, TextPart):
                texts.append(budget.text(part.text))
            else:
                clips.append(budget.audio(part, where))
    calls = tuple(ToolCall(c.id, c.function.name, budget.text(c.function.arguments))
                  for c in (message.tool_calls or () if isinstance(message, AssistantMessage) else ()))
    tool_call_id = message.tool_call_id if isinstance(message, ToolMessage) else None
    return ChatMessage(role=role, content="\n".join(t for t in texts if t), audio=_join(clips), tool_calls=calls,
                       tool_call_id=tool_call_id, name=message.name)


def _join(clips: list[Audio]) -> Audio | None:
    if not clips:
        return None
    rate = clips[0].sample_rate
    samples = [resample(c.samples, c.sample_rate, rate) for c in clips]
    return Audio(np.concatenate(samples).astype(np.float32), rate)
