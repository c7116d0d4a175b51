"""Tools from plain functions, argument checks before a tool runs, and the tool loop over a scripted model."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from stepaudio.engines.base import CancelToken, ChatDelta, ChatMessage, GenerationOptions, ToolCall, ToolSpec
from stepaudio.engines.tools import (
    ToolRegistry,
    argument_errors,
    json_schema_of,
    respond_with_tools,
    tool_spec,
    tools_from_file,
)
from stepaudio.errors import StepAudioError


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict[str, Any]:
    """The current weather in a city.

    Args:
        city: the city's name,
            in English
        unit: how temperatures are given
    """
    return {"city": city, "temperature": 17 if unit == "celsius" else 63, "sky": "light rain"}


def add(a: float, b: float) -> float:
    """Add two numbers.

    :param a: the first
    :param b: the second
    """
    return a + b


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


def test_a_function_becomes_a_tool_spec_from_its_hints_and_docstring() -> None:
    spec = tool_spec(get_weather)
    assert spec.name == "get_weather" and spec.description == "The current weather in a city."
    assert spec.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "the city's name, in English"},
            "unit": {"enum": ["celsius", "fahrenheit"], "description": "how temperatures are given",
                     "default": "celsius"},
        },
        "required": ["city"],
        "additionalProperties": False,
    }
    assert tool_spec(add).parameters["properties"]["b"] == {"type": "number", "description": "the second"}


def test_type_hints_map_to_json_schema() -> None:
    assert json_schema_of(int) == {"type": "integer"} and json_schema_of(bool) == {"type": "boolean"}
    assert json_schema_of(list[int]) == {"type": "array", "items": {"type": "integer"}}
    assert json_schema_of(tuple[str, ...]) == {"type": "array", "items": {"type": "string"}}
    assert json_schema_of(dict[str, int]) == {"type": "object"}
    assert json_schema_of(int | None) == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert json_schema_of(Colour) == {"enum": ["red", "blue"]}
    assert json_schema_of(Any) == {}
    with pytest.raises(TypeError, match="no JSON form"):
        json_schema_of(complex)

    def positional(x: int, /) -> int:
        return x

    with pytest.raises(StepAudioError, match="cannot be given by keyword"):
        tool_spec(positional)

    def loose(x: int, **rest: Any) -> int:
        return x

    assert "additionalProperties" not in tool_spec(loose).parameters


def test_arguments_are_checked_against_the_schema() -> None:
    schema = tool_spec(get_weather).parameters
    assert argument_errors({"city": "Paris"}, schema) == []
    assert argument_errors({}, schema) == ["arguments.city is missing"]
    assert argument_errors({"city": 3}, schema) == ["arguments.city must be string, not 3"]
    assert argument_errors({"city": "Oslo", "unit": "kelvin"}, schema) == [
        'arguments.unit must be one of ["celsius", "fahrenheit"]']
    assert argument_errors({"city": "Oslo", "when": "now"}, schema) == ["arguments.when is not a parameter"]
    bounded = {"type": "object", "properties": {
        "n": {"type": "integer", "minimum": 1}, "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 1},
        "either": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}
    assert argument_errors({"n": 2.0, "tags": ["a"], "either": None}, bounded) == []
    assert argument_errors({"n": 0, "tags": ["a", 1], "either": 5}, bounded) == [
        "arguments.n must be >= 1", "arguments.tags[1] must be string, not 1",
        "arguments.tags must have at most 1 items", "arguments.either matches none of the allowed forms"]
    assert argument_errors({"n": True}, bounded) == ["arguments.n must be integer, not true"]


def test_the_registry_runs_good_calls_and_reports_bad_ones_without_running_them() -> None:
    ran: list[dict[str, Any]] = []

    def weather(city: str) -> dict[str, Any]:
        """Weather."""
        ran.append({"city": city})
        return {"sky": "clear"}

    registry = ToolRegistry.from_functions([weather, add])
    assert [s.name for s in registry.specs] == ["weather", "add"]
    assert json.loads(registry.run(ToolCall("1", "weather", '{"city": "Rome"}'))) == {"sky": "clear"}
    assert registry.run(ToolCall("2", "add", '{"a": 2, "b": 0.5}')) == "2.5"
    bad = json.loads(registry.run(ToolCall("3", "weather", '{"town": "Rome"}')))
    assert bad == {"error": "invalid arguments: arguments.city is missing; arguments.town is not a parameter"}
    assert "not JSON" in registry.run(ToolCall("4", "weather", '{"city": "Ro'))
    assert "unknown tool 'TOOL'" in registry.run(ToolCall("5", "TOOL", "{}"))
    assert ran == [{"city": "Rome"}]  # the bad calls never reached the function


def test_tools_load_from_a_python_file(tmp_path: Path) -> None:
    source = tmp_path / "my_tools.py"
    source.write_text('from json import dumps\n\n\ndef shout(text: str) -> str:\n    """Say it loudly."""\n'
                      '    return text.upper()\n\n\ndef _helper() -> None:\n    pass\n')
    registry = tools_from_file(source)
    assert list(registry.functions) == ["shout"] and registry.specs[0].description == "Say it loudly."
    assert registry.run(ToolCall("1", "shout", '{"text": "hi"}')) == "HI"
    (tmp_path / "empty.py").write_text("X = 1\n")
    with pytest.raises(StepAudioError, match="no public functions"):
        tools_from_file(tmp_path / "empty.py")
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    with pytest.raises(StepAudioError, match="ModuleNotFoundError"):
        tools_from_file(tmp_path / "broken.py")
    with pytest.raises(StepAudioError, match="no tools file"):
        tools_from_file(tmp_path / "missing.py")


class CallsInTheFinalDelta:
    """Like the lite engine: a call arrives in the same delta as the finish reason; then it answers in text."""

    def __init__(self, calls: Sequence[ToolCall]) -> None:
        self.calls = tuple(calls)
        self.seen: list[list[ChatMessage]] = []

    def respond(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None = None,
                options: GenerationOptions | None = None, cancel: CancelToken | None = None) -> Iterator[ChatDelta]:
        self.seen.append(list(messages))
        if messages[-1].role == "tool":
            yield ChatDelta(text="It is ")
            yield ChatDelta(text=f"{json.loads(messages[-1].content)['temperature']} degrees.", finish_reason="stop")
        else:
            yield ChatDelta(tool_calls=self.calls, finish_reason="tool_calls")


def test_calls_sent_with_the_finish_reason_are_run() -> None:
    chat = CallsInTheFinalDelta([ToolCall("c1", "get_weather", '{"city": "Paris"}')])
    registry = ToolRegistry.from_functions([get_weather])
    out = list(respond_with_tools(chat, [ChatMessage("user", "Weather in Paris?")], registry))
    calls, assistant, result, *answer, finish = out
    assert calls == ChatDelta(tool_calls=chat.calls)  # passed on, its finish reason held back: the loop goes on
    assert assistant == ChatMessage("assistant", "", tool_calls=chat.calls)
    assert isinstance(result, ChatMessage) and result.role == "tool" and result.tool_call_id == "c1"
    assert json.loads(result.content) == {"city": "Paris", "temperature": 17, "sky": "light rain"}
    assert "".join(d.text for d in answer if isinstance(d, ChatDelta)) == "It is 17 degrees."
    assert finish == ChatDelta(finish_reason="stop")
    assert [m.role for m in chat.seen[1]] == ["user", "assistant", "tool"]


def test_a_model_that_only_calls_ends_after_max_rounds() -> None:
    class AlwaysCalls(CallsInTheFinalDelta):
        def respond(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None = None,
                    options: GenerationOptions | None = None,
                    cancel: CancelToken | None = None) -> Iterator[ChatDelta]:
            self.seen.append(list(messages))
            yield ChatDelta(tool_calls=self.calls, finish_reason="tool_calls")

    chat = AlwaysCalls([ToolCall("c", "add", '{"a": 1, "b": 2}')])
    out = list(respond_with_tools(chat, [ChatMessage("user", "1+2")], ToolRegistry.from_functions([add]),
                                  max_rounds=2))
    assert len(chat.seen) == 2 and out[-1] == ChatDelta(finish_reason="length")
    assert [m.content for m in out if isinstance(m, ChatMessage) and m.role == "tool"] == ["3", "3"]
