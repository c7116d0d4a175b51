"""Python tools a chat model may call, and the loop that runs them and feeds the results back.

Works with any `ChatModel`: each engine parses calls in its model's own format into `ToolCall`s. A tool is a
plain function: its signature, type hints and docstring become the JSON schema the model reads
(`tool_spec`), and a call's arguments are checked against that schema before the function runs.
"""

from __future__ import annotations

import enum
import importlib.util
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stepaudio.engines.base import CancelToken, ChatDelta, ChatMessage, ChatModel, GenerationOptions, ToolCall, ToolSpec
from stepaudio.errors import StepAudioError


@dataclass(frozen=True)
class ToolRegistry:
    """Callables by name with the specs shown to the model; each takes keyword arguments from the call."""

    functions: Mapping[str, Callable[..., Any]]
    specs: tuple[ToolSpec, ...] = ()

    @classmethod
    def from_functions(cls, functions: Iterable[Callable[..., Any]]) -> ToolRegistry:
        """Each function becomes a tool under its own name, described by `tool_spec`."""
        functions = list(functions)
        return cls({f.__name__: f for f in functions}, tuple(tool_spec(f) for f in functions))

    def run(self, call: ToolCall) -> str:
        """The result as the model will read it; a bad call or a failing tool is reported, never raised."""
        function = self.functions.get(call.name)
        if function is None:
            return _error(f"unknown tool {call.name!r}")
        try:
            arguments = json.loads(call.arguments) if call.arguments.strip() else {}
        except ValueError as exc:
            return _error(f"arguments are not JSON: {exc}")
        if not isinstance(arguments, dict):
            return _error("arguments must be a JSON object")
        spec = next((s for s in self.specs if s.name == call.name), None)
        problems = argument_errors(arguments, spec.parameters) if spec is not None else []
        if problems:
            return _error("invalid arguments: " + "; ".join(problems))
        try:
            result = function(**arguments)
        except Exception as exc:  # a failing tool is reported to the model, never crashes the chat
            return _error(f"{type(exc).__name__}: {exc}")
        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)


def _error(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


def tools_from_file(path: str | Path) -> ToolRegistry:
    """The public functions defined in a Python file, as tools (for `stepaudio chat --tools tools.py`)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise StepAudioError(f"no tools file {str(path)!r}")
    module_spec = importlib.util.spec_from_file_location(f"stepaudio_tools_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise StepAudioError(f"{str(path)!r} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise StepAudioError(f"loading tools from {str(path)!r} failed: {type(exc).__name__}: {exc}") from exc
    functions = [value for name, value in vars(module).items() if not name.startswith("_")
                 and inspect.isfunction(value) and value.__module__ == module.__name__]
    if not functions:
        raise StepAudioError(f"{str(path)!r} defines no public functions to use as tools")
    return ToolRegistry.from_functions(functions)


def tool_spec(function: Callable[..., Any]) -> ToolSpec:
    """A function as the model sees it: the docstring's first paragraph describes it, each parameter's JSON
    type comes from its type hint and its description from an `Args:` section (or `:param x:` lines);
    parameters without a default are required."""
    name = function.__name__
    try:
        hints = typing.get_type_hints(function)
    except Exception as exc:
        raise StepAudioError(f"tool {name}: its type hints do not resolve: {exc}") from exc
    summary, described = _docstring(inspect.getdoc(function) or "")
    properties: dict[str, Any] = {}
    required: list[str] = []
    closed = True
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            closed = False
            continue
        if parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL):
            raise StepAudioError(f"tool {name}: parameter {parameter.name!r} cannot be given by keyword")
        try:
            schema = json_schema_of(hints.get(parameter.name, Any))
        except TypeError as exc:
            raise StepAudioError(f"tool {name}: parameter {parameter.name!r}: {exc}") from exc
        if parameter.name in described:
            schema["description"] = described[parameter.name]
        if parameter.default is inspect.Parameter.empty:
            required.append(parameter.name)
        elif isinstance(parameter.default, (str, int, float, bool)):
            schema["default"] = parameter.default
        properties[parameter.name] = schema
    parameters: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    if closed:
        parameters["additionalProperties"] = False
    return ToolSpec(name, summary, parameters)


_SCALARS: dict[Any, str] = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}


def json_schema_of(hint: Any) -> dict[str, Any]:
    """The JSON schema of a type hint (str, int, float, bool, None, Literal, Enum, unions, lists, dicts)."""
    if hint is Any or hint is inspect.Parameter.empty:
        return {}
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [member.value for member in hint]}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [json_schema_of(arg) for arg in args]}
    if hint in (list, tuple) or origin in (list, tuple, Sequence, Iterable):
        if origin is tuple:  # tuple[X, ...] has an item type; tuple[X, Y] lists positions, not checked here
            items = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        else:
            items = args[0] if args else None
        return {"type": "array", "items": json_schema_of(items)} if items is not None else {"type": "array"}
    if hint is dict or origin in (dict, Mapping):
        return {"type": "object"}
    raise TypeError(f"the type {hint!r} has no JSON form")


def _docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(first paragraph, {parameter: description}) from Google-style `Args:` or Sphinx `:param x:` lines."""
    summary = " ".join(doc.split("\n\n", 1)[0].split())
    described: dict[str, str] = {}
    for match in re.finditer(r":param\s+(?:\w+\s+)?(\w+):\s*(.+)", doc):
        described[match.group(1)] = match.group(2).strip()
    section = re.search(r"^(?:Args|Arguments|Parameters):\s*\n((?:[ \t]+.*\n?|\s*\n)*)", doc, re.MULTILINE)
    if section:
        current, indent = None, 0
        for line in section.group(1).splitlines():
            item = re.match(r"\s{0,8}(\w+)\s*(?:\([^)]*\))?:\s*(.*)", line)
            if item and (current is None or len(line) - len(line.lstrip()) <= indent):
                current, indent = item.group(1), len(line) - len(line.lstrip())
                described[current] = item.group(2).strip()
            elif current is not None and line.strip():
                described[current] = (described[current] + " " + line.strip()).strip()
    return summary, described


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def argument_errors(value: Any, schema: Mapping[str, Any], where: str = "arguments") -> list[str]:
    """What is wrong with `value` under `schema`, checking the keywords tool schemas use (type, enum, const,
    anyOf/oneOf, properties, required, additionalProperties, items, length and range bounds); others pass."""
    if "anyOf" in schema or "oneOf" in schema:
        branches = schema.get("anyOf") or schema.get("oneOf") or []
        if branches and all(argument_errors(value, branch, where) for branch in branches):
            return [f"{where} matches none of the allowed forms"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where} must be one of {json.dumps(schema['enum'], ensure_ascii=False)}"]
    if "const" in schema and value != schema["const"]:
        return [f"{where} must be {json.dumps(schema['const'], ensure_ascii=False)}"]
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_JSON_TYPES.get(kind, lambda v: True)(value) for kind in kinds):
            return [f"{where} must be {' or '.join(kinds)}, not {json.dumps(value, ensure_ascii=False)}"]
    problems: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        problems += [f"{where}.{name} is missing" for name in schema.get("required", ()) if name not in value]
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                problems += argument_errors(item, properties[name], f"{where}.{name}")
            elif extra is False:
                problems.append(f"{where}.{name} is not a parameter")
            elif isinstance(extra, Mapping):
                problems += argument_errors(item, extra, f"{where}.{name}")
    elif isinstance(value, list):
        if isinstance(schema.get("items"), Mapping):
            for index, item in enumerate(value):
                problems += argument_errors(item, schema["items"], f"{where}[{index}]")
        problems += _bounds(len(value), schema, "minItems", "maxItems", where, "items")
    elif isinstance(value, str):
        problems += _bounds(len(value), schema, "minLength", "maxLength", where, "characters")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        problems += _bounds(value, schema, "minimum", "maximum", where, "")
    return problems


def _bounds(size: float, schema: Mapping[str, Any], low: str, high: str, where: str, unit: str) -> list[str]:
    unit = f" {unit}" if unit else ""
    if low in schema and size < schema[low]:
        return [f"{where} must have at least {schema[low]}{unit}" if unit else f"{where} must be >= {schema[low]}"]
    if high in schema and size > schema[high]:
        return [f"{where} must have at most {schema[high]}{unit}" if unit else f"{where} must be <= {schema[high]}"]
    return []


def respond_with_tools(
    chat: ChatModel,
    messages: Sequence[ChatMessage],
    registry: ToolRegistry,
    *,
    max_rounds: int = 4,
    options: GenerationOptions | None = None,
    cancel: CancelToken | None = None,
) -> Iterator[ChatDelta | ChatMessage]:
    """Stream the reply; when the model calls tools, run them, yield the tool turns (ChatMessage) and ask again.

    Text and calls are taken from every delta, the finishing one included (an engine may send its calls with
    the finish reason); only the last round's finish reason is passed on. Ends with that finish delta, or
    'length' when `max_rounds` rounds all ended in calls.
    """
    history = list(messages)
    for _ in range(max_rounds):
        text: list[str] = []
        calls: list[ToolCall] = []
        finish: ChatDelta | None = None
        for delta in chat.respond(history, registry.specs, options, cancel):
            text.append(delta.text)
            calls.extend(delta.tool_calls)
            if delta.finish_reason:
                finish = delta
                delta = replace(delta, finish_reason=None)
                if not (delta.text or delta.tool_calls or delta.usage):
                    continue  # (each round's usage is passed on: the caller sums them)
            yield delta
        if not calls or (cancel is not None and cancel.cancelled):
            yield ChatDelta(finish_reason=finish.finish_reason if finish else "stop")
            return
        assistant = ChatMessage("assistant", "".join(text), tool_calls=tuple(calls))
        history.append(assistant)
        yield assistant
        for call in calls:
            result = ChatMessage("tool", registry.run(call), tool_call_id=call.id, name=call.name)
            history.append(result)
            yield result
    yield ChatDelta(finish_reason="length")


class MarkedCallParser:
    """Splits a streamed reply into text and tool calls written between two markers (each family names its
    markers and how a call's body reads): `push` each delta, `finish` once; a marker split across deltas is
    held back until it is whole, and a call cut off by the token limit is still reported as a call."""

    def __init__(self, start: str, end: str, parse: Callable[[str, str], ToolCall], id_prefix: str = "call_"
                 ) -> None:
        self.start, self.end, self.parse, self.id_prefix = start, end, parse, id_prefix
        self.calls: list[ToolCall] = []
        self._buffer = ""
        self._in_call = False

    def push(self, delta: str) -> Iterator[str | ToolCall]:
        self._buffer += delta
        while True:
            marker = self.end if self._in_call else self.start
            index = self._buffer.find(marker)
            if index < 0:
                if not self._in_call:
                    safe = len(self._buffer) - _partial_suffix(self._buffer, self.start)
                    if safe > 0:
                        yield self._buffer[:safe]
                        self._buffer = self._buffer[safe:]
                return
            before, self._buffer = self._buffer[:index], self._buffer[index + len(marker):]
            if self._in_call:
                yield self._call(before)
            elif before:
                yield before
            self._in_call = not self._in_call

    def finish(self) -> Iterator[str | ToolCall]:
        rest, self._buffer = self._buffer, ""
        if self._in_call:
            self._in_call = False
            yield self._call(rest)
        elif rest:
            yield rest

    def _call(self, body: str) -> ToolCall:
        call = self.parse(body, f"{self.id_prefix}{len(self.calls) + 1}")
        self.calls.append(call)
        return call


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `marker`."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
