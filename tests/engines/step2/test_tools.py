"""Step-Audio 2's tool-call format: `<tool_call>function\nNAME\nJSON</tool_call>`, streamed and replayed."""

from __future__ import annotations

import json

from stepaudio.engines.base import ToolCall
from stepaudio.engines.step2.tools import TIMBRE_TOOL, ToolCallParser, parse_call, render_call


def _run(deltas: list[str]) -> list[str | ToolCall]:
    parser = ToolCallParser()
    out = [piece for delta in deltas for piece in parser.push(delta)]
    return out + list(parser.finish())


def test_calls_split_across_deltas_come_out_whole() -> None:
    reply = 'Sure.<tool_call>function\nsearch\n{"query": "天气"}</tool_call> Done'
    for size in (1, 3, 7, len(reply)):
        pieces = _run([reply[i:i + size] for i in range(0, len(reply), size)])
        assert "".join(p for p in pieces if isinstance(p, str)) == "Sure. Done"
        assert [p for p in pieces if isinstance(p, ToolCall)] == [ToolCall("call_1", "search", '{"query": "天气"}')]


def test_a_call_replays_as_it_is_parsed() -> None:
    call = ToolCall("call_1", "get_weather", '{"location": "beijing"}')
    assert render_call(call) == '<tool_call>function\nget_weather\n{"location": "beijing"}</tool_call>'
    assert _run([render_call(call), render_call(call)]) == [call, ToolCall("call_2", "get_weather", call.arguments)]


def test_loose_bodies_and_cut_calls() -> None:
    assert parse_call("search\n{}", "c") == ToolCall("c", "search", "{}")
    assert parse_call("function\nsearch\nnot json", "c") == ToolCall("c", "search", "not json")
    assert parse_call("", "c").name == "invalid"
    assert _run(["<tool_call>function\nget_date_time\n"]) == [ToolCall("call_1", "get_date_time", "{}")]
    assert _run(["a <tool_c", "all>search"]) == ["a ", ToolCall("call_1", "search", "{}")]
    assert _run(["a <tool_"]) == ["a ", "<tool_"]


def test_the_voice_switch_tool_takes_a_description() -> None:
    assert TIMBRE_TOOL.name == "timbre_rag"
    assert TIMBRE_TOOL.parameters["required"] == ["query"]
    assert json.dumps(TIMBRE_TOOL.parameters, ensure_ascii=False).count("音色") == 1
