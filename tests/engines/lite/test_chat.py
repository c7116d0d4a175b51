"""The lite chat model: streaming and cancellation on SmolLM2, requests and tool calls held to the declared
tools by a grammar, and the default model (Qwen2.5-Coder-0.5B-Instruct) running real tools end to end."""

from __future__ import annotations

import ast
import json
import operator
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from stepaudio.engines.base import (
    CancelToken,
    ChatDelta,
    ChatMessage,
    Engine,
    GenerationOptions,
    ToolCall,
    ToolSpec,
)
from stepaudio.engines.lite.chat import VOICE_SYSTEM_PROMPT, LlamaChat, LlamaOptions, _Lane
from stepaudio.engines.lite.tools import ANSWER_GRAMMAR, call_grammar, call_schema, looks_like_call, parse_calls
from stepaudio.engines.tools import ToolRegistry
from stepaudio.errors import MissingExtraError
from stepaudio.realtime.turn import Conversation, ToolAnswered, ToolCalled, TurnDone, TurnSettings, run_turn

GREEDY = GenerationOptions(temperature=0.0, seed=0, max_new_tokens=48)
WEATHER = ToolSpec("get_weather", "The current weather in a city.",
                   {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
CLOCK = ToolSpec("clock", "tell the time")


def test_smollm2_streams_a_short_answer(lite_engine: Engine) -> None:
    assert lite_engine.chat is not None
    deltas = list(lite_engine.chat.respond([ChatMessage("user", "What is the capital of France?")], options=GREEDY))
    text = "".join(d.text for d in deltas)
    assert len([d for d in deltas if d.text]) > 3  # streamed, not one block
    assert deltas[-1].finish_reason in ("stop", "length") and not deltas[-1].text
    assert "Paris" in text
    usage = deltas[-1].usage  # llama.cpp's own counts
    assert usage is not None and usage.prompt_tokens > 10
    assert usage.completion_tokens == len([d for d in deltas if d.text]) or usage.completion_tokens > 3


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


QUESTIONS = ("Tell me about the moon.", "Why do cats purr?", "What is a river?", "Describe a forest.")


def test_replies_decode_together_and_do_not_change_when_others_talk(lite_engine: Engine) -> None:
    """Four greedy replies at once overlap in time (one batch, not one after another), and each is the text
    the same question gets alone: nothing in a reply depends on who else is talking."""
    from stepaudio.engines.lite import models, resolver

    assert lite_engine.chat is not None  # (the fixture checks SmolLM2 is installed; this test needs fresh slots)
    chat = LlamaChat(resolver.resolve(models.SMOLLM2_135M), LlamaOptions(context=512, parallel=4))
    chat.warmup()
    options = GenerationOptions(temperature=0.0, seed=5, max_new_tokens=24)

    def ask(question: str) -> tuple[str, list[tuple[float, int]]]:
        marks = []
        text = []
        for delta in chat.respond([ChatMessage("user", question)], options=options):
            text.append(delta.text)
            marks.append((time.perf_counter(), len(text)))
        return "".join(text), marks

    alone = {q: ask(q)[0] for q in QUESTIONS}
    together: dict[str, tuple[str, list[tuple[float, int]]]] = {}
    start = threading.Barrier(len(QUESTIONS))

    def run(question: str) -> None:
        start.wait()
        together[question] = ask(question)

    threads = [threading.Thread(target=run, args=(q,)) for q in QUESTIONS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert {q: together[q][0] for q in QUESTIONS} == alone
    first_pieces = [marks[0][0] for _, marks in together.values()]
    last_pieces = [marks[-1][0] for _, marks in together.values()]
    assert max(first_pieces) < min(last_pieces)  # every reply had begun before any had ended


CONVERSATIONS = (
    ("Hi, I am Ann.", "Hello Ann! How can I help you today?", "Explain in three sentences why cats purr."),
    ("What is a river?", "A river is a stream of water flowing toward a sea or a lake.", "Describe a forest."),
    ("Good morning!", "Good morning! What would you like to talk about?", "Tell me about the moon."),
    ("I like birds.", "Birds are wonderful: they sing and fly far.", "Explain in three sentences how birds fly."),
)


@pytest.mark.slow
def test_the_default_model_says_the_same_alone_together_and_in_any_slot() -> None:
    """Qwen (the default chat model; its Q5_0/Q8_0 weights have batched kernels) gives each conversation the same
    greedy reply, to the last bit of every token's logprob, alone, with three others decoding beside it, and
    alone again in another order, when the slots hold other caches: how much of a prompt a slot had cached, and
    whose tokens share an evaluation pass, change nothing."""
    pytest.importorskip("xllamacpp")
    from stepaudio.engines.lite import models, resolver

    try:
        path = resolver.resolve(models.QWEN25_CODER_05B)
    except MissingExtraError as exc:
        pytest.skip(str(exc))
    chat = LlamaChat(path, LlamaOptions(context=1024, parallel=4))
    chat.warmup()
    options = GenerationOptions(temperature=0.0, seed=7, max_new_tokens=40)

    def ask(turns: tuple[str, str, str]) -> tuple[str, list[float], list[float]]:
        """The reply's text, each token's logprob, and when each piece came (the request `respond` sends)."""
        messages = [ChatMessage("user", turns[0]), ChatMessage("assistant", turns[1]), ChatMessage("user", turns[2])]
        request = {**chat._request(messages, options), "logprobs": True, "top_logprobs": 1}
        text, logprobs, marks = [], [], []

        def on_chunk(chunk: Any) -> bool:
            chunk = json.loads(chunk) if isinstance(chunk, str) else chunk
            for choice in chunk.get("choices") or []:
                text.append((choice.get("delta") or {}).get("content") or "")
                logprobs.extend(t["logprob"] for t in (choice.get("logprobs") or {}).get("content") or [])
            marks.append(time.perf_counter())
            return False

        chat._shared.server.handle_chat_completions(request, on_chunk)
        return "".join(text), logprobs, marks

    alone = [ask(c) for c in CONVERSATIONS]
    together: dict[int, tuple[str, list[float], list[float]]] = {}
    start = threading.Barrier(len(CONVERSATIONS))

    def run(index: int) -> None:
        start.wait()
        together[index] = ask(CONVERSATIONS[index])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(CONVERSATIONS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    again = [ask(c) for c in reversed(CONVERSATIONS)][::-1]
    assert all(len(text) > 20 and len(logprobs) > 5 for text, logprobs, _ in alone), alone
    assert [together[i][:2] for i in range(len(CONVERSATIONS))] == [reply[:2] for reply in alone]
    assert [reply[:2] for reply in again] == [reply[:2] for reply in alone]
    assert max(marks[0] for *_, marks in together.values()) < min(marks[-1] for *_, marks in together.values())
    texts = ["".join(d.text for d in chat.respond([ChatMessage("user", c[0]), ChatMessage("assistant", c[1]),
                                                   ChatMessage("user", c[2])], options=options))
             for c in CONVERSATIONS]
    assert texts == [text for text, *_ in alone]  # and `respond` streams those texts

def _request_builder() -> LlamaChat:
    chat = LlamaChat.__new__(LlamaChat)  # request building needs no model
    chat.options = LlamaOptions()
    chat._preparing, chat._preparing_lock = {}, threading.Lock()  # `respond` looks for a read-ahead in flight
    return chat


def test_requests_carry_the_voice_prompt_history_tools_and_grammar() -> None:
    chat = _request_builder()
    history = [ChatMessage("user", "Hi, I am Ann."), ChatMessage("assistant", "Hello Ann!"),
               ChatMessage("assistant", "", tool_calls=(ToolCall("1", "clock", "{}"),)),
               ChatMessage("tool", "12:00", tool_call_id="1", name="clock"), ChatMessage("user", "My name?")]
    request = chat._request(history, GenerationOptions(max_new_tokens=999), tools=[CLOCK], grammar="G")
    messages = request["messages"]
    assert messages[0] == {"role": "system", "content": VOICE_SYSTEM_PROMPT}
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "assistant", "tool", "user"]
    assert messages[3]["tool_calls"] == [{"id": "1", "type": "function",
                                          "function": {"name": "clock", "arguments": "{}"}}]
    assert messages[4] == {"role": "tool", "content": "12:00", "tool_call_id": "1"}
    assert request["tools"][0]["function"]["name"] == "clock" and request["tool_choice"] == "none"
    assert request["grammar"] == "G"
    assert request["max_tokens"] == chat.options.max_new_tokens and request["stream"] is True
    own = chat._request([ChatMessage("system", "Be a pirate."), ChatMessage("user", "hi")], GenerationOptions())
    assert own["messages"][0] == {"role": "system", "content": "Be a pirate."}
    assert "tools" not in own and "grammar" not in own


def test_the_call_grammar_names_only_the_declared_tools() -> None:
    grammar = call_grammar([WEATHER, CLOCK])
    assert grammar.startswith("%llguidance") and "start: calls | text" in grammar
    branches = call_schema([WEATHER, CLOCK])["anyOf"]
    assert [b["properties"]["name"] for b in branches] == [{"const": "get_weather"}, {"const": "clock"}]
    assert branches[0]["properties"]["arguments"]["additionalProperties"] is False  # no invented arguments
    assert branches[0]["additionalProperties"] is False and "TOOL" not in grammar
    assert ANSWER_GRAMMAR.startswith("%llguidance") and "{" in ANSWER_GRAMMAR.split("start:")[1]


def test_replies_under_the_grammar_parse_into_checked_calls() -> None:
    tools = [WEATHER, CLOCK]
    calls = parse_calls('{"name": "get_weather", "arguments": {"city": "Paris"}}', tools)
    assert calls is not None and [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather",
                                                                                        {"city": "Paris"})]
    two = parse_calls('<tool_call>\n{"name": "clock", "arguments": {}}\n</tool_call>\n'
                      '{"name": "get_weather", "arguments": {"city": "Oslo"}}', tools)
    assert two is not None and [c.name for c in two] == ["clock", "get_weather"] and two[0].id != two[1].id
    assert parse_calls('{"name": "get_weather", "arguments": {"ci', tools) is None  # cut by the token limit
    assert parse_calls('{"name": "TOOL", "arguments": {}}', tools) is None
    assert parse_calls("", tools) is None
    assert looks_like_call(' {"na') is True and looks_like_call("<tool") is True
    assert looks_like_call("Paris") is False and looks_like_call("  ") is None


class ScriptedServer:
    """Stands in for xllamacpp's server: records each request and streams the next scripted reply."""

    def __init__(self, *replies: list[str]) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []

    def handle_chat_completions(self, request: dict[str, Any], on_chunk: Callable[[Any], bool]) -> None:
        self.requests.append(request)
        pieces = self.replies.pop(0)
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            finish = ("length" if piece.endswith("...") else "stop") if last else None
            if on_chunk({"choices": [{"delta": {"content": piece.removesuffix("...")}, "finish_reason": None}]}):
                return
            if finish:
                on_chunk({"choices": [{"delta": {}, "finish_reason": finish}]})


def _scripted(*replies: list[str]) -> tuple[LlamaChat, ScriptedServer]:
    chat = _request_builder()
    server = ScriptedServer(*replies)
    chat._shared, chat._solo = _Lane(server, threading.BoundedSemaphore(1)), None
    return chat, server


HISTORY = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello!"),
           ChatMessage("user", "Weather in Oslo?")]


def test_a_call_is_decided_on_the_current_question_and_sent_with_the_finish_reason() -> None:
    chat, server = _scripted(['{"name": "get_weather", ', '"arguments": {"city": "Oslo"}}'])
    deltas = list(chat.respond(HISTORY, [WEATHER], GREEDY))
    assert len(deltas) == 1 and deltas[0].finish_reason == "tool_calls" and not deltas[0].text
    assert [(c.name, json.loads(c.arguments)) for c in deltas[0].tool_calls] == [("get_weather", {"city": "Oslo"})]
    (decision,) = server.requests
    assert [m["content"] for m in decision["messages"]] == ["Be brief.", "Weather in Oslo?"]
    assert decision["grammar"] == call_grammar([WEATHER]) and decision["tool_choice"] == "none"


def test_text_ends_the_decision_and_the_answer_comes_from_the_whole_history() -> None:
    chat, server = _scripted(["It", " is"], ["Sorry,", " I cannot", " tell."])
    deltas = list(chat.respond(HISTORY, [WEATHER], GREEDY))
    assert [d.text for d in deltas] == ["Sorry,", " I cannot", " tell.", ""] and deltas[-1].finish_reason == "stop"
    decision, answer = server.requests
    assert len(decision["messages"]) == 2 and len(answer["messages"]) == 4
    assert "tools" not in answer and answer["grammar"] == ANSWER_GRAMMAR
    assert server.replies == []


def test_a_call_cut_by_the_token_limit_is_never_spoken() -> None:
    chat, _ = _scripted(['{"name": "get_weather", "argu...'])
    assert list(chat.respond(HISTORY, [WEATHER], GREEDY)) == [ChatDelta(finish_reason="length")]


def test_results_are_answered_in_text_without_offering_the_tools_again() -> None:
    chat, server = _scripted(["It is 17 degrees."])
    history = [*HISTORY, ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "get_weather", "{}"),)),
               ChatMessage("tool", '{"temperature": 17}', tool_call_id="c1")]
    assert "".join(d.text for d in chat.respond(history, [WEATHER], GREEDY)) == "It is 17 degrees."
    assert "tools" not in server.requests[0] and server.requests[0]["grammar"] == ANSWER_GRAMMAR
    chat, server = _scripted(["Hello."])
    list(chat.respond(HISTORY, None, GREEDY))
    assert "grammar" not in server.requests[0]  # no tools anywhere: a plain chat, as before


def test_smollm2_with_tools_never_speaks_a_call(lite_engine: Engine) -> None:
    """Whatever the small model does, a reply is well-formed calls of the declared tools or text without JSON."""
    assert lite_engine.chat is not None
    for question in ("What's the weather in Paris?", "What time is it?", "Say hello."):
        deltas = list(lite_engine.chat.respond([ChatMessage("user", question)], [WEATHER, CLOCK], GREEDY))
        text = "".join(d.text for d in deltas)
        calls = [c for d in deltas for c in d.tool_calls]
        assert "{" not in text and "<tool_call>" not in text, (question, text)
        for call in calls:
            assert call.name in ("get_weather", "clock") and isinstance(json.loads(call.arguments), dict)
        if calls:
            assert deltas[-1].finish_reason == "tool_calls"
        else:
            assert text.strip() and deltas[-1].finish_reason in ("stop", "length")


# --- the default model with real tools ---------------------------------------------------------------------

TOOL_OPTIONS = GenerationOptions(temperature=0.0, seed=0, max_new_tokens=80)
_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: operator.pow, ast.BitXor: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos,
}


def _arithmetic(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_arithmetic(node.left), _arithmetic(node.right))  # type: ignore[no-any-return]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_arithmetic(node.operand))  # type: ignore[no-any-return]
    raise ValueError("only numbers and + - * / ^ are allowed")


def tool_registry(ran: list[tuple[str, dict[str, Any]]]) -> ToolRegistry:
    """A weather tool with fixed data and a calculator; `ran` records each call that reached a function."""

    def get_weather(city: str) -> dict[str, Any]:
        """The current weather in a city.

        Args:
            city: the city's name
        """
        ran.append(("get_weather", {"city": city}))
        return {"city": city, "temperature_celsius": 17, "sky": "light rain"}

    def calculate(expression: str) -> float:
        """Evaluate an arithmetic expression such as 2 * (3 + 4).

        Args:
            expression: the arithmetic expression
        """
        ran.append(("calculate", {"expression": expression}))
        return _arithmetic(ast.parse(expression, mode="eval").body)

    return ToolRegistry.from_functions([get_weather, calculate])


@pytest.fixture(scope="module")
def default_engine() -> Engine:
    """The lite engine as users get it: its chat model is the packaged Qwen2.5-Coder-0.5B-Instruct."""
    pytest.importorskip("xllamacpp")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from stepaudio.engines.lite import models, resolver
    from stepaudio.engines.registry import create_engine

    try:
        resolver.resolve(models.QWEN25_CODER_05B)
    except MissingExtraError as exc:
        pytest.skip(str(exc))
    return create_engine("lite")


def test_the_default_model_calls_the_weather_tool_and_answers_from_its_result(default_engine: Engine) -> None:
    ran: list[tuple[str, dict[str, Any]]] = []
    settings = TurnSettings(registry=tool_registry(ran), speak=False, options=TOOL_OPTIONS)
    events = list(run_turn(default_engine, [ChatMessage("user", "What's the weather like in Paris?")], settings))
    assert ran == [("get_weather", {"city": "Paris"})]
    called = [e.call for e in events if isinstance(e, ToolCalled)]
    assert [(c.name, json.loads(c.arguments)) for c in called] == [("get_weather", {"city": "Paris"})]
    answered = [e.message for e in events if isinstance(e, ToolAnswered)]
    assert len(answered) == 1 and json.loads(answered[0].content)["temperature_celsius"] == 17
    done = events[-1]
    assert isinstance(done, TurnDone) and done.finish_reason == "stop"
    assert "17" in done.reply and "rain" in done.reply.lower(), done.reply
    assert "{" not in done.reply
    assert [m.role for m in done.messages] == ["user", "assistant", "tool", "assistant"]
    assert done.usage is not None and done.usage.prompt_tokens > 100  # the decision's and the answer's, summed


@pytest.mark.slow
def test_a_conversation_calls_the_tool_each_question_needs(default_engine: Engine) -> None:
    ran: list[tuple[str, dict[str, Any]]] = []
    conversation = Conversation(default_engine, TurnSettings(registry=tool_registry(ran), speak=False,
                                                             options=TOOL_OPTIONS))
    replies = []
    for question in ("What's the weather in Paris?", "What is 17 times 23?", "Hi, who are you?"):
        done = list(conversation.turn(text=question))[-1]
        assert isinstance(done, TurnDone)
        replies.append(done.reply)
    assert [name for name, _ in ran] == ["get_weather", "calculate"]  # and no tool for the greeting
    assert ran[0][1] == {"city": "Paris"}
    assert _arithmetic(ast.parse(ran[1][1]["expression"], mode="eval").body) == 391
    assert "17" in replies[0] and "391" in replies[1], replies
    assert all("{" not in reply for reply in replies) and replies[2]


def test_a_lone_reply_decodes_in_the_solo_context_and_says_the_same(lite_engine: Engine) -> None:
    """`alone` replies take the solo context (two threads here against one): the same text greedy and sampled
    with a seed; a second one while it is taken goes to the shared context; no solo context unless it has more
    threads."""
    from stepaudio.engines.lite import models, resolver

    assert lite_engine.chat is not None  # (the fixture checks SmolLM2 is installed; this test needs fresh slots)
    path = resolver.resolve(models.SMOLLM2_135M)
    chat = LlamaChat(path, LlamaOptions(context=512, parallel=2, threads=1, solo_threads=2))
    solo = chat._solo
    assert solo is not None
    question = [ChatMessage("user", "Name three colours of the rainbow.")]
    for options in (GREEDY, GenerationOptions(temperature=0.9, seed=11, max_new_tokens=32)):
        lone = chat.respond(question, options=options, alone=True)
        text = next(lone).text
        assert not solo.gate.acquire(blocking=False)  # the lone reply holds it
        beside = "".join(d.text for d in chat.respond(question, options=options, alone=True))  # so: shared
        text += "".join(d.text for d in lone)
        assert solo.gate.acquire(blocking=False)  # given back when the reply ended
        solo.gate.release()
        assert text == beside and len(text) > 10
    chat.prepare([*question, ChatMessage("assistant", "Red."), ChatMessage("user", "And two more?")], alone=True)
    assert solo.gate.acquire(blocking=False)  # a read-ahead gives it back too
    solo.gate.release()
    assert LlamaChat(path, LlamaOptions(context=512, parallel=1, threads=2, solo_threads=2))._solo is None


def test_a_reply_read_ahead_reads_only_the_rest_and_says_the_same(lite_engine: Engine) -> None:
    """`prepare` with the words settled while the user speaks leaves the reply only the rest of the prompt to
    read (llama.cpp gives it the slot holding its start), and the greedy reply is the one read in one go."""
    from stepaudio.engines.lite import models, resolver

    assert lite_engine.chat is not None  # (the fixture checks SmolLM2 is installed; this test needs fresh slots)
    chat = LlamaChat(resolver.resolve(models.SMOLLM2_135M), LlamaOptions(context=512, parallel=2))
    chat.warmup()
    history = [ChatMessage("user", "Hello."), ChatMessage("assistant", "Hi! How can I help you today?")]
    question = "Tell me one short fact about the moon and the tides of the sea."
    options = GenerationOptions(temperature=0.0, seed=3, max_new_tokens=16)

    def reply(messages: list[ChatMessage]) -> tuple[str, int, int]:
        deltas = list(chat.respond(messages, options=options))
        usage = deltas[-1].usage
        assert usage is not None
        return "".join(d.text for d in deltas), usage.prompt_tokens, usage.cached_tokens

    cold_text, _, cold_cached = reply([*history, ChatMessage("user", question)])
    other = [ChatMessage("user", "Good evening."), ChatMessage("assistant", "Good evening to you too!")]
    chat.prepare([*other, ChatMessage("user", question[:40])])
    warm_text, _, warm_cached = reply([*other, ChatMessage("user", question)])
    assert warm_cached > cold_cached + 5  # the settled words came from the slot read ahead
    chat.prepare([*history, ChatMessage("user", question[:40])])
    assert reply([*history, ChatMessage("user", question)])[0] == cold_text
    assert warm_text
    chat.prepare([ChatMessage("assistant", "not a user turn")])  # ignored: nothing to read ahead of
