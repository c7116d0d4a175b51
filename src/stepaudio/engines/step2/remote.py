"""Step-Audio 2 behind the vendor's vLLM server (`stepaudio vllm-command --model step2`): chat, ASR and TTS sent
as OpenAI-style chat completions, speech decoded here by token2wav in our voices.

The wire format is the vendor's own (read in its client `stepaudio2vllm.py` and `examples-vllm-stream.py`):
* the server applies the chat template (`--chat_template_content_format string`); roles are `system`,
  `human` (not `user`), `assistant` and `input` (a tool's result, with `tool_call_id`);
* a spoken turn is a list of `input_audio` parts, one 16 kHz mono 16-bit wav (base64) per 25 s piece, then
  the turn's text as a `text` part;
* a speech reply is asked for by a last assistant message `<tts_start>` with `"eot": false` and
  `continue_final_message` (else `add_generation_prompt`); think mode opens the turn with `\\n<think>\\n` the
  same way;
* each streamed `choices[0].delta` carries text in `tts_content.tts_text` (else `content`), speech as
  `<audio_N>` strings in `tts_content.tts_audio` (N the CosyVoice2 code), and `tool_calls` parsed by the
  server's `step_audio_2` tool parser. The vendor's client replaces a call's `arguments` with each later
  delta's; OpenAI servers send fragments to append: both are read (a delta that extends what came is the
  whole so far).
Tools declared by the caller go as OpenAI `tools` (`parallel_tool_calls` off, as the vendor sends it); the
voice switch (`timbre_rag`) is run here as the native engine runs it.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stepaudio.audio.io import Audio, encode_audio, resample, to_mono
from stepaudio.audio_encoder.frontend import SAMPLE_RATE as AUDIO_IN_RATE
from stepaudio.decoder.cosyvoice2.prompt import Prompt as VoicePrompt
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
from stepaudio.engines.remote import RemoteLMError, post_events
from stepaudio.engines.step2.chat import (
    MAX_SWITCH_ROUNDS,
    REPETITION_PENALTY,
    ChatSettings,
    Reason,
    Step2ChatBase,
    timbre_query,
)
from stepaudio.engines.step2.runtime import SpeechCode
from stepaudio.engines.step2.tools import TIMBRE_TOOL
from stepaudio.engines.step2.tts import (
    SAMPLE_RATE,
    SPEECH_SAMPLING,
    SpeechOut,
    Step2Synthesizer,
    TTSSettings,
    token_budget,
)
from stepaudio.engines.step2.voices import Step2Voices
from stepaudio.errors import AudioError, StepAudioError
from stepaudio.text.step2_prompts import ASR_SYSTEM, THINK_CLOSE, TTS_SYSTEM, think_prefill
from stepaudio.text.vocab import STEP_AUDIO2

SERVED_NAME = "step-audio-2-mini"
PIECE_SECONDS = 25  # the reference cuts audio into 25 s pieces, one input_audio part each
_AUDIO = re.compile(r"<audio_(\d+)>")


@dataclass(frozen=True)
class ServerDelta:
    """One streamed piece of a reply: text, speech codes, tool-call fragments (OpenAI delta shape), and at the
    end the finish reason and the usage where the server reports them."""

    text: str = ""
    codes: tuple[int, ...] = ()
    tool_calls: tuple[dict[str, Any], ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True)
class Step2Server:
    """The chat-completions endpoint of one served Step-Audio 2 (`base_url`: the server root or its /v1)."""

    base_url: str
    model: str = SERVED_NAME
    api_key: str | None = None
    timeout: float = 600.0

    @property
    def chat_url(self) -> str:
        root = self.base_url.rstrip("/")
        return (root if root.endswith("/v1") else root + "/v1") + "/chat/completions"

    def request_body(self, messages: Sequence[dict[str, Any]], sampling: dict[str, Any], *,
                     prefill: str | None = None, tools: Sequence[ToolSpec] = ()) -> dict[str, Any]:
        """The request: `prefill` opens the assistant turn (continued by the model), else a new turn starts."""
        body: dict[str, Any] = {"model": self.model, "messages": list(messages), "stream": True,
                                "stream_options": {"include_usage": True}, "skip_special_tokens": False,
                                **sampling}
        if prefill is not None:
            body["messages"].append({"role": "assistant", "content": prefill, "eot": False})
            body |= {"continue_final_message": True, "add_generation_prompt": False}
        else:
            body |= {"continue_final_message": False, "add_generation_prompt": True}
        if tools:
            body["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                                "parameters": dict(t.parameters)}} for t in tools]
            body["parallel_tool_calls"] = False
        return body

    def stream(self, body: dict[str, Any], cancel: CancelToken | None = None) -> Iterator[ServerDelta]:
        events = post_events(self.chat_url, body, self.api_key, self.timeout)
        for event in events:
            if cancel is not None and cancel.cancelled:
                events.close()
                return
            yield from _deltas(event, self.chat_url)


def _deltas(event: dict[str, Any], url: str) -> Iterator[ServerDelta]:
    usage = event.get("usage")
    for choice in event.get("choices") or []:
        delta = choice.get("delta") or choice.get("message") or {}
        if not isinstance(delta, dict):
            raise RemoteLMError(f"{url} sent a choice without a delta: {json.dumps(choice)[:200]}")
        tts = delta.get("tts_content") or {}
        text = tts.get("tts_text") or delta.get("content") or ""
        codes = tuple(int(n) for n in _AUDIO.findall(tts.get("tts_audio") or ""))
        yield ServerDelta(text=text, codes=tuple(c for c in codes if c < STEP_AUDIO2.audio_codes),
                          tool_calls=tuple(delta.get("tool_calls") or ()), finish_reason=choice.get("finish_reason"))
    if isinstance(usage, dict):
        yield ServerDelta(usage=Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)))


@dataclass
class CallAssembler:
    """Streamed tool-call fragments -> whole calls, by index."""

    parts: dict[int, dict[str, str]] = field(default_factory=dict)

    def push(self, fragment: dict[str, Any]) -> None:
        index = int(fragment.get("index", len(self.parts) if fragment.get("id") else max(self.parts, default=0)))
        part = self.parts.setdefault(index, {"id": "", "name": "", "arguments": ""})
        function = fragment.get("function") or {}
        part["id"] = fragment.get("id") or part["id"]
        part["name"] = function.get("name") or part["name"]
        more = function.get("arguments") or ""
        seen = part["arguments"]
        part["arguments"] = more if seen and more.startswith(seen) else seen + more

    def calls(self) -> list[ToolCall]:
        return [ToolCall(p["id"] or f"call_{i}", p["name"] or "invalid", p["arguments"] or "{}")
                for i, p in sorted(self.parts.items())]


def audio_parts(audio: Audio) -> list[dict[str, Any]]:
    """`input_audio` parts: 16 kHz mono 16-bit wav, one per 25 s piece (as the vendor's client sends them)."""
    samples = resample(to_mono(np.asarray(audio.samples, dtype=np.float32)), audio.sample_rate, AUDIO_IN_RATE)
    if samples.size == 0:
        raise AudioError("empty audio")
    step = PIECE_SECONDS * AUDIO_IN_RATE
    return [{"type": "input_audio", "input_audio": {
        "data": base64.b64encode(encode_audio(samples[start : start + step], AUDIO_IN_RATE, "wav")).decode(),
        "format": "wav"}} for start in range(0, samples.size, step)]


def server_messages(messages: Sequence[ChatMessage], default_system: str,
                    history: str = "text") -> list[dict[str, Any]]:
    """The conversation as the vendor's server reads it. The newest user turn goes as audio when spoken; earlier
    spoken turns go as their transcript when known, unless `history` is "audio" (the native engine's policy)."""
    newest = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    out: list[dict[str, Any]] = []
    if not any(m.role == "system" for m in messages):
        out.append({"role": "system", "content": default_system})
    for index, message in enumerate(messages):
        if message.role == "user":
            spoken = message.audio is not None and (index == newest or history == "audio"
                                                    or message.transcript is None)
            if spoken:
                assert message.audio is not None
                text = [{"type": "text", "text": message.content}] if message.content else []
                out.append({"role": "human", "content": [*audio_parts(message.audio), *text]})
            else:
                out.append({"role": "human", "content": message.text_for_reading()})
        elif message.role == "assistant":
            entry: dict[str, Any] = {"role": "assistant", "content": message.content}
            if message.tool_calls:
                entry["tool_calls"] = [_call_entry(c) for c in message.tool_calls]
            out.append(entry)
        elif message.role == "tool":
            out.append({"role": "input", "tool_call_id": message.tool_call_id or "",
                        "content": [{"type": "text", "text": message.content}]})
        else:
            out.append({"role": message.role, "content": message.content})
    return out


def _call_entry(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments or "{}"}}


def _sampling(options: GenerationOptions) -> dict[str, Any]:
    values: dict[str, Any] = {"max_tokens": options.max_new_tokens, "temperature": options.temperature,
                              "top_p": options.top_p, "repetition_penalty": REPETITION_PENALTY}
    if options.top_k > 0:
        values["top_k"] = options.top_k
    if options.seed is not None:
        values["seed"] = options.seed
    return values


class Step2RemoteChat(Step2ChatBase):
    """`ChatModel` over a served Step-Audio 2: hears audio (sent as the server's `input_audio`), speaks with its
    own speech codes through local token2wav, runs the voice switch here."""

    missing_speech = "spoken replies need the token2wav folder (-O model_path=RELEASE) and a voice"

    def __init__(self, server: Step2Server, settings: ChatSettings | None = None,
                 decoder: Callable[[], Token2Wav] | None = None, voices: Step2Voices | None = None) -> None:
        super().__init__(settings, decoder, voices)
        self.server = server

    def _reply(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None,
               options: GenerationOptions | None, cancel: CancelToken | None, speech: bool,
               voice: Voice | str | None) -> Iterator[ChatDelta | AudioChunk]:
        declared, switching = self.declared_tools(tools)
        conversation = server_messages(messages, self.settings.default_system, self.settings.history)
        sampling = _sampling(options or GenerationOptions(max_new_tokens=self.settings.max_new_tokens))
        usage = Usage()
        reason: Reason = "stop"
        for _ in range(MAX_SWITCH_ROUNDS):
            opened = ""
            if self.settings.think:
                thought, used = self._think(conversation, sampling, declared, cancel)
                usage += used
                opened = think_prefill(thought)
            prefill = opened + (STEP_AUDIO2.tts_start if speech else "")
            out = None
            if speech and self._decoder is not None and self._voices is not None:
                out = SpeechOut(self._decoder(), self._voices.prompt(voice))
            body = self.server.request_body(conversation, sampling, prefill=prefill or None, tools=declared)
            calls = CallAssembler()
            text: list[str] = []
            finish = None
            for delta in self.server.stream(body, cancel):
                if delta.text:
                    text.append(delta.text)
                    yield ChatDelta(text=delta.text)
                for code in delta.codes:
                    if out is not None and (pcm := out.push(SpeechCode(code))).size:
                        yield AudioChunk(pcm, SAMPLE_RATE)
                for fragment in delta.tool_calls:
                    calls.push(fragment)
                finish = delta.finish_reason or finish
                if delta.usage is not None:
                    usage += delta.usage
            if out is not None and (pcm := out.finish()).size:
                yield AudioChunk(pcm, SAMPLE_RATE, is_last=True)
            if cancel is not None and cancel.cancelled:
                reason = "cancelled"
                break
            made = calls.calls()
            switches = [c for c in made if switching and c.name == TIMBRE_TOOL.name]
            others = [c for c in made if c not in switches]
            for call in others:
                yield ChatDelta(tool_calls=(call,))
            if others:
                reason = "tool_calls"
                break
            if not switches:
                reason = "length" if finish == "length" else "stop"
                break
            assert self._voices is not None
            conversation.append({"role": "assistant", "content": "".join(text),
                                 "tool_calls": [_call_entry(c) for c in switches]})
            conversation += [{"role": "input", "tool_call_id": c.id,
                              "content": [{"type": "text", "text": self._voices.switch(timbre_query(c))}]}
                             for c in switches]
            voice = None  # the switched voice speaks the rest of the reply
        yield ChatDelta(finish_reason=reason, usage=usage)

    def _think(self, conversation: list[dict[str, Any]], sampling: dict[str, Any], tools: Sequence[ToolSpec],
               cancel: CancelToken | None) -> tuple[str, Usage]:
        """Think mode's first pass: the turn opened with `<think>`, stopped at `</think>`."""
        body = self.server.request_body(conversation, {**sampling, "stop": [THINK_CLOSE]},
                                        prefill=think_prefill(), tools=tools)
        thought, usage = "", Usage()
        for delta in self.server.stream(body, cancel):
            thought += delta.text
            usage += delta.usage or Usage()
        return thought.split(THINK_CLOSE, 1)[0], usage


class Step2RemoteTranscriber:
    """ASR on the served model: the reference's ASR system prompt, the audio as the human turn, greedy."""

    def __init__(self, server: Step2Server, max_new_tokens: int = 512) -> None:
        self.server = server
        self.max_new_tokens = max_new_tokens

    def transcribe(self, audio: Audio, language: str | None = None) -> Transcript:
        messages: list[dict[str, Any]] = [{"role": "system", "content": ASR_SYSTEM},
                                          {"role": "human", "content": audio_parts(audio)}]
        body = self.server.request_body(messages, {"max_tokens": self.max_new_tokens, "temperature": 0.0})
        text = "".join(delta.text for delta in self.server.stream(body))
        return Transcript(text=text.strip(), language=language, duration=audio.duration)


class Step2RemoteSynthesizer(Step2Synthesizer):
    """TTS on the served model's speech mode; its codes are decoded here in our voices (clones too)."""

    def __init__(self, server: Step2Server, decoder: Callable[[], Token2Wav], voices: Step2Voices,
                 settings: TTSSettings | None = None) -> None:
        super().__init__(_no_runtime, decoder, voices, settings)
        self.server = server

    def _segment(self, text: str, prompt: VoicePrompt, cancel: CancelToken | None) -> Iterator[np.ndarray]:
        budget = token_budget(text)
        if self.settings.max_segment_tokens:
            budget = min(budget, self.settings.max_segment_tokens)
        sampling = {"max_tokens": budget, "temperature": SPEECH_SAMPLING.temperature, "top_p": SPEECH_SAMPLING.top_p,
                    "repetition_penalty": SPEECH_SAMPLING.repetition_penalty,
                    **({"seed": self.settings.seed} if self.settings.seed is not None else {})}
        messages = [{"role": "system", "content": TTS_SYSTEM}, {"role": "human", "content": text}]
        body = self.server.request_body(messages, sampling, prefill=STEP_AUDIO2.tts_start)
        out = SpeechOut(self._decoder(), prompt)
        for delta in self.server.stream(body, cancel):
            for code in delta.codes:
                yield out.push(SpeechCode(code))
        if cancel is not None and cancel.cancelled:
            return
        yield out.finish()


def _no_runtime() -> Any:
    raise StepAudioError("a served Step-Audio 2 has no local runtime")
