"""Step-Audio-Chat as a `ChatModel` (text or spoken turns in, streamed text and tool calls out) and as a
`Transcriber` (the same model with the ASR system prompt).

Spoken turns reach the model as `<audio_N>` text from the dual-codebook tokenizer; past spoken turns that
already have a transcript are sent as that text (Step-Audio's text-based context), so a long conversation
costs a few text tokens per turn instead of ~42 audio tokens per second.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from stepaudio.audio.io import Audio
from stepaudio.engines.base import (
    CancelToken,
    ChatDelta,
    ChatMessage,
    GenerationOptions,
    ToolCall,
    ToolSpec,
    Transcript,
    Usage,
)
from stepaudio.engines.lm_backend import LMBackend
from stepaudio.engines.step.heard import StepHeard
from stepaudio.engines.step.tools import ToolCallParser, render_call, tools_system_text
from stepaudio.lm import GREEDY, GenerationConfig, SamplingConfig
from stepaudio.text import system_prompts
from stepaudio.text.prompts import chat_prompt_text
from stepaudio.text.vocab import STEP1
from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer

Message = dict[str, Any]


@dataclass(frozen=True)
class ChatSettings:
    default_system: str | None = None  # added when the conversation has no system turn
    max_new_tokens: int = 2048


class StepChat:
    """`ChatModel` over Step-Audio-Chat through any LM backend (in process, or vLLM); it hears audio (the
    engine declares `Abilities.hears_audio`)."""

    def __init__(
        self,
        lm: Callable[[], LMBackend],
        audio_tokenizer: Callable[[], StepAudioTokenizer],
        settings: ChatSettings | None = None,
        count_tokens: Callable[[str], int] | None = None,
    ) -> None:
        self._lm = lm
        self._audio_tokenizer = audio_tokenizer
        self.settings = settings or ChatSettings()
        self._count_tokens = count_tokens  # the prompt's length in the model's tokens, for `usage`
        self._heard: dict[int, tuple[Audio, str]] = {}  # clips tokenised while spoken (`listen`), by object
        self._heard_lock = threading.Lock()

    def listen(self, sample_rate: int) -> StepHeard:
        """Hear a turn while it is spoken: its audio tokens are made as it comes (see `engines.step.heard`)."""
        return StepHeard(self._audio_tokenizer, sample_rate, self._keep)

    def _keep(self, audio: Audio, text: str) -> None:
        with self._heard_lock:
            self._heard[id(audio)] = (audio, text)
            while len(self._heard) > 16:
                del self._heard[next(iter(self._heard))]

    def prompt(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None = None) -> str:
        """The prompt string: the newest spoken user turn as audio tokens, earlier ones by transcript."""
        last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
        converted: list[Message] = []
        for index, message in enumerate(messages):
            converted.append({"role": message.role, "content": self._content(message, index == last_user)})
        if tools:
            if converted and converted[0]["role"] == "system":
                converted[0] = {"role": "system", "content": converted[0]["content"] + tools_system_text(tools)}
            else:
                base = self.settings.default_system or system_prompts.CHAT_DEFAULT
                converted.insert(0, {"role": "system", "content": base + tools_system_text(tools)})
        return chat_prompt_text(converted, default_system=self.settings.default_system)

    def respond(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec] | None = None,
        options: GenerationOptions | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[ChatDelta]:
        options = options or GenerationOptions(max_new_tokens=self.settings.max_new_tokens)
        sampling = SamplingConfig(temperature=options.temperature, top_k=options.top_k, top_p=options.top_p)
        config = GenerationConfig(max_new_tokens=options.max_new_tokens, sampling=sampling, stop_ids=STEP1.stop_ids,
                                  seed=options.seed)
        parser = ToolCallParser()
        count = 0
        prompt = self.prompt(messages, tools)
        usage = Usage(self._count_tokens(prompt)) if self._count_tokens is not None else None
        for token in self._lm().stream(prompt, config, cancel):
            count += 1
            yield from _deltas(parser.push(token.text))
        yield from _deltas(parser.finish())
        if cancel is not None and cancel.cancelled:
            reason = "cancelled"
        elif parser.calls:
            reason = "tool_calls"
        else:
            reason = "length" if count >= options.max_new_tokens else "stop"
        if usage is not None:
            usage = Usage(usage.prompt_tokens, count)
        yield ChatDelta(finish_reason=reason, usage=usage)  # type: ignore[arg-type]

    def complete(self, messages: Sequence[ChatMessage], config: GenerationConfig) -> str:
        """The whole reply text at once (ASR, evaluation)."""
        return "".join(token.text for token in self._lm().stream(self.prompt(messages), config))

    def _content(self, message: ChatMessage, newest_user: bool) -> str:
        """What was written, then the speech: as audio tokens for the newest user turn and for any turn whose
        transcript is unknown, else as its transcript (text-based context)."""
        if message.audio is not None and (newest_user or message.transcript is None):
            text = message.content + self._audio_text(message.audio)
        else:
            text = message.text_for_reading() if message.role == "user" else message.content
        if message.tool_calls:
            text += "".join(render_call(call) for call in message.tool_calls)
        return text

    def _audio_text(self, audio: Audio) -> str:
        with self._heard_lock:
            heard = self._heard.get(id(audio))
        if heard is not None and heard[0] is audio:
            return heard[1]
        return self._audio_tokenizer().audio_text(audio.samples, audio.sample_rate, trim=False)


class StepTranscriber:
    """ASR with the chat model: its ASR system prompt and the audio as the user turn, greedy decoding."""

    def __init__(self, chat: StepChat, max_new_tokens: int = 512) -> None:
        self.chat = chat
        self.max_new_tokens = max_new_tokens

    def transcribe(self, audio: Audio, language: str | None = None) -> Transcript:
        messages = [ChatMessage("system", system_prompts.ASR), ChatMessage("user", "", audio=audio)]
        config = GenerationConfig(max_new_tokens=self.max_new_tokens, sampling=GREEDY, stop_ids=STEP1.stop_ids)
        text = self.chat.complete(messages, config)
        return Transcript(text=text.strip(), language=language, duration=audio.duration)


def _deltas(items: Iterator[str | ToolCall]) -> Iterator[ChatDelta]:
    for item in items:
        if isinstance(item, ToolCall):
            yield ChatDelta(tool_calls=(item,))
        elif item:
            yield ChatDelta(text=item)
