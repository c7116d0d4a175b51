"""Tool calls for Step-Audio-Chat: schemas in the system prompt, calls between `<|CALL_START|>` and
`<|CALL_END|>` in the reply, results fed back as `tool` turns.

The release documents the two marker tokens but no format inside them, so we fix one that the model can
follow from the system prompt (a JSON object with `name` and `arguments`) and parse leniently: a bare
`name` line followed by JSON, or `name(json)`, are accepted too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stepaudio.engines.base import ToolCall, ToolSpec

CALL_START = "<|CALL_START|>"
CALL_END = "<|CALL_END|>"
_NAME_THEN_ARGS = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(?:\((.*)\)|\n(.*))\s*$", re.S)


def tools_system_text(tools: Sequence[ToolSpec]) -> str:
    """The paragraph appended to the system prompt that teaches the call format."""
    schemas = [
        {"name": tool.name, "description": tool.description, "parameters": dict(tool.parameters)} for tool in tools
    ]
    return (
        "\n\n你可以调用以下工具 (you can call these tools):\n"
        + json.dumps(schemas, ensure_ascii=False)
        + f'\n调用工具时输出 {CALL_START}{{"name": 工具名, "arguments": {{参数}}}}{CALL_END}，'
        "然后等待工具结果再回答。"
    )


def render_call(call: ToolCall) -> str:
    """How an earlier call appears in the assistant turn of the history."""
    try:
        arguments: Any = json.loads(call.arguments) if call.arguments else {}
    except json.JSONDecodeError:
        arguments = call.arguments
    return CALL_START + json.dumps({"name": call.name, "arguments": arguments}, ensure_ascii=False) + CALL_END


def parse_call(body: str, call_id: str) -> ToolCall:
    """A ToolCall from the text between the markers; unparseable text becomes a call named `invalid`."""
    text = body.strip()
    try:
        data = json.loads(text)
        if isinstance(data, Mapping) and isinstance(data.get("name"), str):
            return ToolCall(call_id, data["name"], _arguments_json(data.get("arguments", data.get("parameters", {}))))
    except json.JSONDecodeError:
        pass
    match = _NAME_THEN_ARGS.match(text)
    if match:
        raw = (match.group(2) if match.group(2) is not None else match.group(3) or "").strip() or "{}"
        try:
            return ToolCall(call_id, match.group(1), _arguments_json(json.loads(raw)))
        except json.JSONDecodeError:
            pass
    return ToolCall(call_id, "invalid", json.dumps({"raw": text}, ensure_ascii=False))


def _arguments_json(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False)


@dataclass
class ToolCallParser:
    """Splits a streamed reply into text and tool calls: `push` each delta, `finish` once; markers split across
    deltas are held back."""

    id_prefix: str = "call_"
    _buffer: str = ""
    _in_call: bool = False
    _count: int = 0
    calls: list[ToolCall] = field(default_factory=list)

    def push(self, delta: str) -> Iterator[str | ToolCall]:
        self._buffer += delta
        while True:
            marker = CALL_END if self._in_call else CALL_START
            index = self._buffer.find(marker)
            if index < 0:
                if not self._in_call:
                    safe = len(self._buffer) - _partial_suffix(self._buffer, CALL_START)
                    if safe > 0:
                        yield self._buffer[:safe]
                        self._buffer = self._buffer[safe:]
                return
            before, self._buffer = self._buffer[:index], self._buffer[index + len(marker) :]
            if self._in_call:
                yield self._finish_call(before)
            elif before:
                yield before
            self._in_call = not self._in_call

    def finish(self) -> Iterator[str | ToolCall]:
        """The rest, at the end of generation; an unterminated call is still reported as a call."""
        rest, self._buffer = self._buffer, ""
        if self._in_call:
            self._in_call = False
            yield self._finish_call(rest)
        elif rest:
            yield rest

    def _finish_call(self, body: str) -> ToolCall:
        self._count += 1
        call = parse_call(body, f"{self.id_prefix}{self._count}")
        self.calls.append(call)
        return call


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `marker`."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
