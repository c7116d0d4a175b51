"""Step-Audio 2 as a `ChatModel` (spoken or written turns in, streamed text and tool calls out), as a spoken
reply (`speak`: text and the model's own speech, the reference's `<tts_start>` mode), and as a `Transcriber`
(the reference's ASR prompt).

A spoken user turn reaches the model as audio: its 25 s pieces' mels, encoded and spliced over the prompt's
`<audio_patch>` placeholders (`Step2Model.prompt_embeds`). History is text by default: earlier spoken turns
whose transcript is known are sent as that transcript (a long conversation then costs a few text tokens per
turn instead of 12.5 audio rows a second); `history="audio"` sends them as audio. Think mode runs the
reference's two passes (think until `</think>`, then answer after it). Calls of `timbre_rag` (the model's
voice switch) are run here: the current voice changes and the model is asked again with the result.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from stepaudio.audio.io import Audio
from stepaudio.decoder.cosyvoice2.token2wav import Token2Wav
from stepaudio.engines.base import (
    AudioChunk,
    CancelToken,
    ChatDelta,
    ChatMessage,
    GenerationOptions,
    ToolCall,
    ToolSpec,
    Transcript,
    Usage,
    Voice,
)
from stepaudio.engines.step2.runtime import Counted, SpeechCode, Step2Runtime
from stepaudio.engines.step2.tools import TIMBRE_TOOL, ToolCallParser, declared, render_call
from stepaudio.engines.step2.tts import SAMPLE_RATE, SpeechOut
from stepaudio.engines.step2.voices import Step2Voices
from stepaudio.errors import StepAudioError
from stepaudio.lm import GREEDY, GenerationConfig, SamplingConfig
from stepaudio.text.step2_prompts import (
    ASR_SYSTEM,
    DEFAULT_SYSTEM,
    THINK_CLOSE,
    TOOL_RESULT_ROLE,
    TOOLS_ROLE,
    Item,
    Turn,
    render,
    think_prefill,
    tools_content,
)

MAX_SWITCH_ROUNDS = 3  # a reply may switch voices this many times before it must answer
REPETITION_PENALTY = 1.05  # the reference's setting for every chat example

Reason = Literal["stop", "length", "tool_calls", "cancelled"]


@dataclass(frozen=True)
class ChatSettings:
    default_system: str = DEFAULT_SYSTEM  # when the conversation has no system turn
    max_new_tokens: int = 2048
    think: bool = False
    history: Literal["text", "audio"] = "text"
    voice_switch: bool = True  # declare `timbre_rag` (where there are voices to switch to) and run its calls


class Step2ChatBase:
    """What the native and the served Step-Audio 2 chats share: written and spoken replies over one `_reply`
    loop, and the voice switch's declaration; only how a turn reaches the model differs."""

    missing_speech = "spoken replies need the token2wav folder and a voice"

    def __init__(self, settings: ChatSettings | None = None, decoder: Callable[[], Token2Wav] | None = None,
                 voices: Step2Voices | None = None) -> None:
        self.settings = settings or ChatSettings()
        self._decoder = decoder
        self._voices = voices

    def respond(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None = None,
                options: GenerationOptions | None = None, cancel: CancelToken | None = None) -> Iterator[ChatDelta]:
        """A written reply (the model's text mode)."""
        for item in self._reply(messages, tools, options, cancel, speech=False, voice=None):
            if isinstance(item, ChatDelta):
                yield item

    def speak(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None = None,
              options: GenerationOptions | None = None, cancel: CancelToken | None = None,
              voice: Voice | str | None = None) -> Iterator[ChatDelta | AudioChunk]:
        """A spoken reply: the text as deltas and the model's own speech as 24 kHz chunks, both streamed."""
        if self._decoder is None or self._voices is None:
            raise StepAudioError(self.missing_speech)
        yield from self._reply(messages, tools, options, cancel, speech=True, voice=voice)

    def declared_tools(self, tools: Sequence[ToolSpec] | None) -> tuple[list[ToolSpec], bool]:
        """The caller's tools, plus `timbre_rag` where there are voices to switch to and the caller has not
        declared its own; and whether its calls are run here (the switch is ours)."""
        listed = list(tools or [])
        switching = (self.settings.voice_switch and self._voices is not None and bool(self._voices.names())
                     and all(t.name != TIMBRE_TOOL.name for t in listed))
        return ([*listed, TIMBRE_TOOL] if switching else listed), switching

    def _reply(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None,
               options: GenerationOptions | None, cancel: CancelToken | None, speech: bool,
               voice: Voice | str | None) -> Iterator[ChatDelta | AudioChunk]:
        raise NotImplementedError


class Step2Chat(Step2ChatBase):
    """`ChatModel` over Step-Audio 2; it hears audio (the engine declares `Abilities.hears_audio`)."""

    def __init__(self, runtime: Callable[[], Step2Runtime], settings: ChatSettings | None = None,
                 decoder: Callable[[], Token2Wav] | None = None, voices: Step2Voices | None = None) -> None:
        super().__init__(settings, decoder, voices)
        self._runtime = runtime

    def conversation(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec],
                     runtime: Step2Runtime) -> tuple[list[Turn], list[torch.Tensor]]:
        """The turns of `messages` (system first, then the declared tools) and the mels of their audio."""
        newest = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
        turns: list[Turn] = []
        mels: list[torch.Tensor] = []
        if not any(m.role == "system" for m in messages):
            turns.append(Turn("system", self.settings.default_system))
        for index, message in enumerate(messages):
            if message.role == "user":
                turns.append(Turn("user", self._user_content(message, index == newest, runtime, mels)))
            elif message.role == "assistant":
                turns.append(Turn("assistant", message.content + "".join(render_call(c) for c in message.tool_calls)))
            elif message.role == "tool":
                turns.append(Turn(TOOL_RESULT_ROLE, message.content))
            else:
                turns.append(Turn(message.role, message.content))
        if tools:
            at = next((i + 1 for i, t in enumerate(turns) if t.role == "system"), 0)
            turns.insert(at, Turn(TOOLS_ROLE, tools_content(declared(tools))))
        return turns, mels

    def _user_content(self, message: ChatMessage, newest: bool, runtime: Step2Runtime,
                      mels: list[torch.Tensor]) -> str | tuple[Item, ...]:
        as_audio = message.audio is not None and (newest or self.settings.history == "audio"
                                                   or message.transcript is None)
        if not as_audio:
            return message.text_for_reading()
        assert message.audio is not None
        item, pieces = runtime.audio(message.audio)
        mels.extend(pieces)
        return (message.content, item) if message.content else (item,)

    def _reply(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None,
               options: GenerationOptions | None, cancel: CancelToken | None, speech: bool,
               voice: Voice | str | None) -> Iterator[ChatDelta | AudioChunk]:
        runtime = self._runtime()
        declared, switching = self.declared_tools(tools)
        turns, mels = self.conversation(messages, declared, runtime)
        config = self._config(runtime, options)
        usage = Usage()
        reason: Reason = "stop"
        for _ in range(MAX_SWITCH_ROUNDS):
            thinking = None
            if self.settings.think:
                thinking, used = self._think(runtime, turns, mels, config, cancel)
                usage += used
            opened = think_prefill(thinking) if self.settings.think else ""
            tail = opened + (runtime.vocab.tts_start if speech else "")
            prompt = runtime.prompt(render([*turns, Turn("assistant", tail or None, eot=False)], runtime.vocab), mels)
            out = None
            if speech and self._decoder is not None and self._voices is not None:
                out = SpeechOut(self._decoder(), self._voices.prompt(voice))
            parser = ToolCallParser()
            text: list[str] = []
            ids = Counted(runtime.run(prompt, config, cancel))
            for item in runtime.split(iter(ids)):
                if isinstance(item, SpeechCode):
                    if out is not None and (pcm := out.push(item)).size:
                        yield AudioChunk(pcm, SAMPLE_RATE)
                    continue
                for piece in parser.push(item):
                    yield from _emit(piece, text, switching)
            for piece in parser.finish():
                yield from _emit(piece, text, switching)
            if out is not None and (pcm := out.finish()).size:
                yield AudioChunk(pcm, SAMPLE_RATE, is_last=True)
            generated = ids.count
            usage += Usage(len(prompt.ids), generated)
            if cancel is not None and cancel.cancelled:
                reason = "cancelled"
                break
            switches = [c for c in parser.calls if switching and c.name == TIMBRE_TOOL.name]
            others = [c for c in parser.calls if c not in switches]
            if others:
                reason = "tool_calls"
                break
            if not switches:
                reason = "length" if generated >= config.max_new_tokens else "stop"
                break
            assert self._voices is not None
            turns.append(Turn("assistant", "".join(text) + "".join(render_call(c) for c in switches)))
            turns.append(Turn(TOOL_RESULT_ROLE, "\n".join(self._voices.switch(timbre_query(c)) for c in switches)))
            voice = None  # the switched voice speaks the rest of the reply
        yield ChatDelta(finish_reason=reason, usage=usage)

    def _think(self, runtime: Step2Runtime, turns: list[Turn], mels: list[torch.Tensor], config: GenerationConfig,
               cancel: CancelToken | None) -> tuple[str, Usage]:
        """The first pass of think mode: what the model thinks, up to `</think>` (kept out of the reply)."""
        prompt = runtime.prompt(render([*turns, Turn("assistant", think_prefill(), eot=False)], runtime.vocab), mels)
        thought = ""
        ids = Counted(runtime.run(prompt, config, cancel))
        for item in runtime.split(iter(ids)):
            if isinstance(item, str):
                thought += item
                if THINK_CLOSE in thought:
                    break
        return thought.split(THINK_CLOSE, 1)[0], Usage(len(prompt.ids), ids.count)

    def _config(self, runtime: Step2Runtime, options: GenerationOptions | None) -> GenerationConfig:
        options = options or GenerationOptions(max_new_tokens=self.settings.max_new_tokens)
        sampling = SamplingConfig(temperature=options.temperature, top_k=options.top_k, top_p=options.top_p,
                                  repetition_penalty=REPETITION_PENALTY)
        return GenerationConfig(max_new_tokens=options.max_new_tokens, stop_ids=runtime.stop_ids, sampling=sampling,
                                seed=options.seed)


class Step2Transcriber:
    """ASR with the chat model: the reference's ASR system prompt, the audio as the user turn, greedy."""

    def __init__(self, runtime: Callable[[], Step2Runtime], max_new_tokens: int = 512) -> None:
        self._runtime = runtime
        self.max_new_tokens = max_new_tokens

    def transcribe(self, audio: Audio, language: str | None = None) -> Transcript:
        runtime = self._runtime()
        item, mels = runtime.audio(audio)
        segments = render([Turn("system", ASR_SYSTEM), Turn("user", (item,)), Turn("assistant", None)], runtime.vocab)
        config = GenerationConfig(max_new_tokens=self.max_new_tokens, stop_ids=runtime.stop_ids, sampling=GREEDY)
        ids = runtime.run(runtime.prompt(segments, mels), config)
        text = "".join(piece for piece in runtime.split(ids) if isinstance(piece, str))
        return Transcript(text=text.strip(), language=language, duration=audio.duration)


def _emit(piece: str | ToolCall, text: list[str], switching: bool) -> Iterator[ChatDelta]:
    """A parsed piece as a delta; voice switches stay inside the engine."""
    if isinstance(piece, ToolCall):
        if not (switching and piece.name == TIMBRE_TOOL.name):
            yield ChatDelta(tool_calls=(piece,))
    elif piece:
        text.append(piece)
        yield ChatDelta(text=piece)


def timbre_query(call: ToolCall) -> str:
    """The timbre description a `timbre_rag` call asks for (its arguments as written when they are not JSON)."""
    try:
        arguments = json.loads(call.arguments)
    except json.JSONDecodeError:
        return call.arguments
    return str(arguments.get("query", "")) if isinstance(arguments, dict) else str(arguments)
