from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from stepaudio.engines.base import ToolCall, ToolSpec
from stepaudio.engines.step.tools import (
    CALL_END,
    CALL_START,
    ToolCallParser,
    parse_call,
    render_call,
    tools_system_text,
)
from stepaudio.engines.tools import ToolRegistry


def run_parser(deltas: list[str]) -> list[str | ToolCall]:
    parser = ToolCallParser()
    out: list[str | ToolCall] = []
    for delta in deltas:
        out.extend(parser.push(delta))
    out.extend(parser.finish())
    return out


def test_text_and_call_are_separated() -> None:
    reply = f'好的。{CALL_START}{{"name": "weather", "arguments": {{"city": "北京"}}}}{CALL_END}稍等'
    out = run_parser([reply])
    assert out[0] == "好的。"
    assert isinstance(out[1], ToolCall) and out[1].name == "weather"
    assert json.loads(out[1].arguments) == {"city": "北京"}
    assert out[2] == "稍等"


@given(st.lists(st.integers(1, 7), min_size=1, max_size=40))
def test_any_split_of_the_stream_gives_the_same_result(cuts: list[int]) -> None:
    reply = f'a{CALL_START}{{"name": "f", "arguments": {{}}}}{CALL_END}b<|CALL_x{CALL_START}g\n{{"x": 1}}{CALL_END}'
    deltas, position = [], 0
    for size in cuts:
        deltas.append(reply[position : position + size])
        position += size
    deltas.append(reply[position:])
    out = run_parser(deltas)
    text = "".join(x for x in out if isinstance(x, str))
    calls = [x for x in out if isinstance(x, ToolCall)]
    assert text == "ab<|CALL_x"
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("f", {}), ("g", {"x": 1})]
    assert [c.id for c in calls] == ["call_1", "call_2"]


def test_lenient_forms_and_garbage() -> None:
    assert parse_call('search({"q": "x"})', "c").name == "search"
    assert json.loads(parse_call("search\n{\"q\": \"x\"}", "c").arguments) == {"q": "x"}
    bad = parse_call("not a call at all {", "c")
    assert bad.name == "invalid" and "raw" in json.loads(bad.arguments)
    unterminated = run_parser([f'{CALL_START}{{"name": "f", "arguments": {{"a": 1}}}}'])
    assert isinstance(unterminated[0], ToolCall) and unterminated[0].name == "f"


def test_render_round_trips_through_the_parser() -> None:
    call = ToolCall("call_9", "add", json.dumps({"a": 1, "b": 2}))
    out = run_parser([render_call(call)])
    assert isinstance(out[0], ToolCall) and (out[0].name, json.loads(out[0].arguments)) == ("add", {"a": 1, "b": 2})


def test_system_text_lists_schemas() -> None:
    text = tools_system_text([ToolSpec("add", "adds", {"type": "object", "properties": {"a": {"type": "number"}}})])
    assert '"name": "add"' in text and CALL_START in text and CALL_END in text


def test_registry_runs_tools_and_reports_failures() -> None:
    registry = ToolRegistry({"add": lambda a, b: a + b, "boom": lambda: 1 / 0})
    assert registry.run(ToolCall("1", "add", '{"a": 2, "b": 3}')) == "5"
    assert "unknown tool" in registry.run(ToolCall("2", "nope", "{}"))
    assert "ZeroDivisionError" in registry.run(ToolCall("3", "boom", "{}"))
    assert "must be a JSON object" in registry.run(ToolCall("4", "add", "[1, 2]"))
