from __future__ import annotations

import json

from stepaudio.engines.base import CancelToken, ChatMessage, Engine, GenerationOptions, ToolCall, ToolSpec
from stepaudio.engines.lite.chat import VOICE_SYSTEM_PROMPT, LlamaChat
from stepaudio.engines.lite.tools import parse_tool_calls, tools_prompt

GREEDY = GenerationOptions(temperature=0.0, seed=0, max_new_tokens=48)


def test_smollm2_streams_a_short_answer(lite_engine: Engine) -> None:
    assert lite_engine.chat is not None
    deltas = list(lite_engine.chat.respond([ChatMessage("user", "What is the capital of France?")], options=GREEDY))
    text = "".join(d.text for d in deltas)
    assert len([d for d in deltas if d.text]) > 3  # streamed, not one block
    assert deltas[-1].finish_reason in ("stop", "length") and not deltas[-1].text
    assert "Paris" in text


def test_the_token_limit_and_cancellation_end_a_reply(lite_engine: Engine) -> None:
    assert lite_engine.chat is not None
    story = [ChatMessage("user", "Tell me a long story about a dragon and a knight.")]
    limited = list(lite_engine.chat.respond(story, options=GenerationOptions(temperature=0.0, max_new_tokens=5)))
    assert limited[-1].finish_reason == "length"
    assert 1 <= len([d for d in limited if d.text]) <= 5
    cancel = CancelToken()
    pieces = []
    for delta in lite_engine.chat.respond(story, options=GREEDY, cancel=cancel):
        pieces.append(delta)
        if len(pieces) == 3:
            cancel.cancel()
    assert pieces[-1].finish_reason == "cancelled"
    assert len(pieces) <= 5


def test_requests_carry_the_voice_prompt_history_and_tools() -> None:
    chat = LlamaChat.__new__(LlamaChat)  # request building needs no model
    from stepaudio.engines.lite.chat import LlamaOptions

    chat.options = LlamaOptions()
    history = [ChatMessage("user", "Hi, I am Ann."), ChatMessage("assistant", "Hello Ann!"),
               ChatMessage("assistant", "", tool_calls=(ToolCall("1", "clock", "{}"),)),
               ChatMessage("tool", "12:00", tool_call_id="1", name="clock"), ChatMessage("user", "My name?")]
    request = chat._request(history, [ToolSpec("clock", "tell the time")], GenerationOptions(max_new_tokens=999))
    messages = request["messages"]
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith(VOICE_SYSTEM_PROMPT)
    assert '"clock"' in messages[0]["content"]
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "assistant", "user", "user"]
    assert json.loads(messages[3]["content"]) == {"tool_calls": [{"name": "clock", "arguments": {}}]}
    assert request["max_tokens"] == chat.options.max_new_tokens and request["stream"] is True
    own = chat._request([ChatMessage("system", "Be a pirate."), ChatMessage("user", "hi")], None, GenerationOptions())
    assert own["messages"][0] == {"role": "system", "content": "Be a pirate."}


def test_tool_call_json_is_parsed() -> None:
    reply = '```json\n{"tool_calls": [{"name": "weather", "arguments": {"city": "Paris"}}]}\n```'
    text, calls = parse_tool_calls(reply)
    assert text == "" and calls[0].name == "weather" and json.loads(calls[0].arguments) == {"city": "Paris"}
    assert parse_tool_calls('{"name": "clock"}')[1][0].name == "clock"
    assert parse_tool_calls("Paris is lovely {really}.") == ("Paris is lovely {really}.", ())
    assert "weather" in tools_prompt([ToolSpec("weather", "get the weather")])
