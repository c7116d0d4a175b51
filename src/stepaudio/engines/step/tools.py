"""Tool calls for Step-Audio-Chat: schemas in the system prompt, calls between `<|CALL_START|>` and
`<|CALL_END|>` in the reply, results fed back as `tool` turns.

The release documents the two marker tokens but no format inside them, so we fix one that the model can
follow from the system prompt (a JSON object with `name` and `arguments`) and parse leniently: a bare
`name` line followed by JSON, or `name(json)`, are accepted too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from stepaudio.engines.base import ToolCall, ToolSpec
from stepaudio.engines.tools import MarkedCallParser

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


class ToolCallParser(MarkedCallParser):
    """Step-Audio-Chat's calls: between <|CALL_START|> and <|CALL_END|>."""

    def __init__(self, id_prefix: str = "call_") -> None:
        super().__init__(CALL_START, CALL_END, parse_call, id_prefix)
