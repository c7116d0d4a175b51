"""The step2 engine over a served model (`server_url`), against a fake of the vendor's vLLM server on loopback.

The fake speaks the wire format of the vendor's client (`stepaudio2vllm.py`, `examples-vllm-stream.py`):
`/v1/chat/completions` with roles system / human / assistant / input, spoken turns as `input_audio` parts (it
decodes each and refuses anything but 16 kHz mono 16-bit wav of at most 25 s), a last assistant message with
`"eot": false` continued under `continue_final_message`, streamed deltas with `tts_content.tts_text` /
`tts_content.tts_audio` (`<audio_N>` strings), tool calls from its tool parser, a usage chunk, vLLM error bodies.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from stepaudio.audio.io import Audio
from stepaudio.engines.base import AudioChunk, ChatDelta, ChatMessage, Engine, GenerationOptions, ToolCall, ToolSpec
from stepaudio.engines.registry import create_engine
from stepaudio.engines.remote import RemoteLMError
from stepaudio.engines.step2.remote import CallAssembler, Step2Server
from stepaudio.testing.loopback import serve_on_loopback
from stepaudio.testing.tiny_stack import speech_like
from stepaudio.text.step2_prompts import ASR_SYSTEM, TTS_SYSTEM

SERVED = "step-audio-2-mini"
SEARCH = ToolSpec("search", "搜索工具", {"type": "object", "properties": {"query": {"type": "string"}},
                                       "required": ["query"]})
CODES = [12, 40, 6560, 7, 3001, 99, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
         24, 25, 26, 27, 28, 29, 30]


def spoken(seconds: float, seed: int = 1, rate: int = 16000) -> Audio:
    return Audio(speech_like(seconds, rate, seed), rate)


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class FakeServer:
    """What the served model answers, chosen from the request as the real one would be prompted."""

    arguments_style: str = "fragments"  # fragments (OpenAI) | whole (each delta the arguments so far)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def heard(self, body: dict[str, Any]) -> list[float]:
        """Seconds of every input_audio part, after checking it is what the server's audio loader takes."""
        seconds = []
        for message in body["messages"]:
            if message["role"] not in ("system", "human", "assistant", "input"):
                raise Refused(400, f"unknown role {message['role']!r} in the step_audio_2 chat template")
            for part in message["content"] if isinstance(message.get("content"), list) else []:
                if part["type"] != "input_audio":
                    continue
                data, rate = sf.read(io.BytesIO(base64.b64decode(part["input_audio"]["data"])))
                info = sf.info(io.BytesIO(base64.b64decode(part["input_audio"]["data"])))
                if rate != 16000 or data.ndim != 1 or info.subtype != "PCM_16" or len(data) > 25 * 16000:
                    raise Refused(400, f"audio must be 16 kHz mono PCM16 of at most 25 s, got {info}")
                seconds.append(len(data) / rate)
        return seconds

    def answer(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The deltas of the reply (before the usage chunk)."""
        self.requests.append(body)
        if body.get("model") != SERVED:
            raise Refused(404, f"The model `{body.get('model')}` does not exist.")
        messages = body["messages"]
        heard = self.heard(body)
        last = messages[-1]
        prefill = last["content"] if last["role"] == "assistant" and last.get("eot") is False else None
        if (prefill is None) != bool(body["add_generation_prompt"]) or body["continue_final_message"] != (
                prefill is not None):
            raise Refused(400, "continue_final_message needs an open assistant message, and only then")
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        human = next(m for m in reversed(messages) if m["role"] == "human")
        said = human["content"] if isinstance(human["content"], str) else " ".join(
            p["text"] for p in human["content"] if p["type"] == "text")
        tools = [t["function"]["name"] for t in body.get("tools", [])]
        if system == ASR_SYSTEM:
            return [{"content": f"heard {' '.join(f'{s:.1f}' for s in heard)}"}]
        if prefill is not None and prefill.startswith("\n<think>\n") and "</think>" not in prefill:
            assert body.get("stop") == ["</think>"]
            return [{"content": "they asked"}, {"content": " something"}]  # the stop string is not returned
        result = messages[-2] if prefill is not None else last
        if result["role"] == "input":
            return [{"content": "done: "}, {"content": result["content"][0]["text"]}]
        if "voice" in said and "timbre_rag" in tools:
            return self._call("timbre_rag", {"query": "低沉的男声, 像 default_male"})
        if "search" in said and "search" in tools:
            return self._call("search", {"query": "weather"})
        reply = f"You said: {said}" if said else f"audio of {heard[-1]:.1f} s"
        if prefill is not None and prefill.endswith("<tts_start>"):
            pieces = [f"<audio_{c}>" for c in [*CODES, 6561]]  # the padding code goes too
            half = len(pieces) // 2
            return [{"tts_content": {"tts_text": reply, "tts_audio": "".join(pieces[:half])}},
                    {"tts_content": {"tts_text": "", "tts_audio": "".join(pieces[half:])}}]
        words = reply.split(" ")
        return [{"content": w + (" " if i < len(words) - 1 else "")} for i, w in enumerate(words)]

    def _call(self, name: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
        text = json.dumps(arguments, ensure_ascii=False)
        pieces = [text[:5], text[5:12], text[12:]]
        head = {"index": 0, "id": "call_x1", "type": "function", "function": {"name": name, "arguments": ""}}
        deltas = [{"tool_calls": [head]}]
        for index, piece in enumerate(pieces):
            shown = text[: sum(len(p) for p in pieces[: index + 1])] if self.arguments_style == "whole" else piece
            deltas.append({"tool_calls": [{"index": 0, "function": {"arguments": shown}}]})
        return deltas


@pytest.fixture
def fake() -> Iterator[tuple[FakeServer, str]]:
    state = FakeServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            try:
                assert self.path == "/v1/chat/completions"
                deltas = state.answer(body)
            except Refused as exc:
                self.send_response(exc.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"error": {"message": str(exc), "type": "BadRequestError",
                                                       "code": exc.status}}).encode())
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            calls = any("tool_calls" in d for d in deltas)
            base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": SERVED}
            events: list[Any] = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", **d},
                                                       "finish_reason": None}]} for d in deltas]
            events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason":
                                                "tool_calls" if calls else "stop"}]})
            events.append({**base, "choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": len(deltas)}})
            for event in [*events, "[DONE]"]:
                payload = event if isinstance(event, str) else json.dumps(event, ensure_ascii=False)
                self.wfile.write(f"data: {payload}\n\n".encode())
                self.wfile.flush()

    with serve_on_loopback(Handler) as url:
        yield state, url


@pytest.fixture
def served(fake: tuple[FakeServer, str], step2_stack: Path) -> tuple[FakeServer, Engine]:
    """The engine on the fake, with the tiny release folder for token2wav and the voices."""
    state, url = fake
    return state, create_engine("step2", server_url=url + "/v1", model_path=str(step2_stack), seed=0)


def _split(items: list[Any]) -> tuple[str, list[ToolCall], ChatDelta, list[AudioChunk]]:
    deltas = [i for i in items if isinstance(i, ChatDelta)]
    audio = [i for i in items if isinstance(i, AudioChunk)]
    return "".join(d.text for d in deltas), [c for d in deltas for c in d.tool_calls], deltas[-1], audio


def test_a_spoken_question_goes_as_the_servers_audio_input(served: tuple[FakeServer, Engine]) -> None:
    state, engine = served
    assert engine.chat is not None
    question = spoken(2.0, rate=22050)
    text, calls, last, _ = _split(list(engine.chat.respond([ChatMessage("user", "", audio=question)],
                                                           options=GenerationOptions(max_new_tokens=9, seed=3))))
    assert text == "audio of 2.0 s" and not calls
    assert last.finish_reason == "stop" and last.usage is not None and last.usage.prompt_tokens == 50
    body = state.requests[-1]
    system, human = body["messages"]
    assert system["role"] == "system" and human["role"] == "human"
    assert [p["type"] for p in human["content"]] == ["input_audio"]
    assert body["model"] == SERVED and body["stream"] and body["add_generation_prompt"]
    assert body["max_tokens"] == 9 and body["seed"] == 3 and body["repetition_penalty"] == 1.05
    assert body["skip_special_tokens"] is False
    assert [t["function"]["name"] for t in body["tools"]] == ["timbre_rag"]  # there are voices to switch to


def test_long_audio_goes_in_25_s_pieces(fake: tuple[FakeServer, str]) -> None:
    state, url = fake
    engine = create_engine("step2", server_url=url)
    assert engine.transcriber is not None and engine.synthesizer is None and not engine.abilities.speaks
    heard = engine.transcriber.transcribe(spoken(31.0)).text
    assert heard == "heard 25.0 6.0"
    body = state.requests[-1]
    assert body["messages"][0]["content"] == ASR_SYSTEM and body["temperature"] == 0.0


def test_history_tools_and_results_in_the_servers_roles(served: tuple[FakeServer, Engine]) -> None:
    state, engine = served
    assert engine.chat is not None
    call = ToolCall("call_7", "search", '{"query": "weather"}')
    messages = [ChatMessage("system", "Be brief."),
                ChatMessage("user", "", audio=spoken(1.0), transcript="what is the weather"),
                ChatMessage("assistant", "Where?"),
                ChatMessage("user", "here"),
                ChatMessage("assistant", "", tool_calls=(call,)),
                ChatMessage("tool", "sunny", tool_call_id="call_7")]
    text, _, last, _ = _split(list(engine.chat.respond(messages, tools=[SEARCH])))
    assert text == "done: sunny" and last.finish_reason == "stop"
    sent = state.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "human", "assistant", "human", "assistant", "input"]
    assert sent[1]["content"] == "what is the weather"  # an earlier spoken turn goes as its transcript
    assert sent[4]["tool_calls"] == [{"id": "call_7", "type": "function",
                                      "function": {"name": "search", "arguments": '{"query": "weather"}'}}]
    assert sent[5] == {"role": "input", "tool_call_id": "call_7", "content": [{"type": "text", "text": "sunny"}]}
    declared = {t["function"]["name"] for t in state.requests[-1]["tools"]}
    assert declared == {"search", "timbre_rag"} and state.requests[-1]["parallel_tool_calls"] is False


@pytest.mark.parametrize("style", ["fragments", "whole"])
def test_streamed_tool_calls_come_out_whole(served: tuple[FakeServer, Engine], style: str) -> None:
    state, engine = served
    state.arguments_style = style
    assert engine.chat is not None
    _, calls, last, _ = _split(list(engine.chat.respond([ChatMessage("user", "please search")], tools=[SEARCH])))
    assert calls == [ToolCall("call_x1", "search", '{"query": "weather"}')] and last.finish_reason == "tool_calls"


def test_a_spoken_reply_decodes_the_servers_speech_codes_here(served: tuple[FakeServer, Engine]) -> None:
    state, engine = served
    assert engine.chat is not None and engine.abilities.speaks
    items = list(engine.chat.speak([ChatMessage("user", "hello")], voice="default_male"))  # type: ignore[attr-defined]
    text, _, last, audio = _split(items)
    assert text == "You said: hello" and last.finish_reason == "stop"
    samples = np.concatenate([a.samples for a in audio])
    assert all(a.sample_rate == 24000 for a in audio) and audio[-1].is_last
    assert samples.size == len(CODES) * 2 * 480  # two mel frames a code, 480 samples a frame; padding dropped
    body = state.requests[-1]
    assert body["messages"][-1] == {"role": "assistant", "content": "<tts_start>", "eot": False}
    assert body["continue_final_message"] and not body["add_generation_prompt"]


def test_the_voice_switch_runs_here(served: tuple[FakeServer, Engine]) -> None:
    state, engine = served
    assert engine.chat is not None
    text, calls, last, _ = _split(list(engine.chat.respond([ChatMessage("user", "use a deep voice")])))
    assert not calls and last.finish_reason == "stop" and text.startswith("done: ")
    switched = json.loads(text.removeprefix("done: "))
    assert switched["voice"] == "default_male"
    first, second = state.requests[-2:]
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "timbre_rag"
    assert second["messages"][-1]["role"] == "input" and second["messages"][-1]["tool_call_id"] == "call_x1"
    assert len(first["messages"]) + 2 == len(second["messages"])


def test_tts_reads_in_the_speech_mode_and_decodes_here(served: tuple[FakeServer, Engine]) -> None:
    state, engine = served
    assert engine.synthesizer is not None
    chunks = list(engine.synthesizer.synthesize("Hello there.", "default_female"))
    assert chunks[-1].is_last and sum(c.samples.size for c in chunks) == len(CODES) * 960
    body = state.requests[-1]
    assert [m["role"] for m in body["messages"]] == ["system", "human", "assistant"]
    assert body["messages"][0]["content"] == TTS_SYSTEM and body["messages"][-1]["content"] == "<tts_start>"
    assert body["temperature"] == 0.7 and body["top_p"] == 0.9


def test_think_mode_thinks_first_then_answers_after_the_thinking(fake: tuple[FakeServer, str]) -> None:
    state, url = fake
    engine = create_engine("step2", server_url=url, think=True)
    assert engine.chat is not None
    text, _, last, _ = _split(list(engine.chat.respond([ChatMessage("user", "hi")])))
    assert text == "You said: hi" and last.usage is not None and last.usage.prompt_tokens == 100
    thinking, answer = state.requests[-2:]
    assert thinking["messages"][-1]["content"] == "\n<think>\n" and thinking["stop"] == ["</think>"]
    assert answer["messages"][-1]["content"] == "\n<think>\nthey asked something</think>\n\n"


def test_server_errors_are_clear(fake: tuple[FakeServer, str]) -> None:
    _, url = fake
    engine = create_engine("step2", server_url=url, server_model="other")
    assert engine.chat is not None
    with pytest.raises(RemoteLMError, match="404: The model `other` does not exist"):
        list(engine.chat.respond([ChatMessage("user", "hi")]))
    server = Step2Server(url)
    body = server.request_body([{"role": "user", "content": "hi"}], {"max_tokens": 4})
    with pytest.raises(RemoteLMError, match="unknown role 'user'"):
        list(server.stream(body))


def test_call_fragments_without_an_index_join_the_open_call() -> None:
    calls = CallAssembler()
    calls.push({"id": "a", "function": {"name": "f", "arguments": '{"x"'}})
    calls.push({"function": {"arguments": ": 1}"}})
    calls.push({"id": "b", "function": {"name": "g", "arguments": "{}"}})
    assert calls.calls() == [ToolCall("a", "f", '{"x": 1}'), ToolCall("b", "g", "{}")]
