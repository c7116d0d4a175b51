"""Tool calling for small chat models without native support: the tools go into the system prompt as JSON
schemas, and a reply that is a JSON object `{"tool_calls": [{"name": ..., "arguments": {...}}]}` is a call.

Good enough for a 0.5B model to pick among a few tools; a reply that is not such JSON is plain text.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

from stepaudio.engines.base import ToolCall, ToolSpec

_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def tools_prompt(tools: Sequence[ToolSpec]) -> str:
    specs = [{"name": t.name, "description": t.description, "parameters": dict(t.parameters)} for t in tools]
    return (
        "You can call these tools:\n" + json.dumps(specs, ensure_ascii=False) + "\n"
        'To call one, reply with only JSON: {"tool_calls": [{"name": "TOOL", "arguments": {...}}]}. '
        "Otherwise reply normally."
    )


def parse_tool_calls(text: str) -> tuple[str, tuple[ToolCall, ...]]:
    """Split a reply into (text, tool calls); text is '' when the reply was only a call."""
    match = _JSON_OBJECT.search(text)
    if match is None:
        return text.strip(), ()
    try:
        payload = json.loads(match.group(0))
    except ValueError:
        return text.strip(), ()
    calls = _calls_from(payload)
    if not calls:
        return text.strip(), ()
    rest = (text[: match.start()] + text[match.end() :]).strip().strip("`").strip()
    if rest.lower() in ("json", ""):
        rest = ""
    return rest, calls


def _calls_from(payload: Any) -> tuple[ToolCall, ...]:
    if isinstance(payload, dict) and "tool_calls" not in payload and "name" in payload:
        payload = {"tool_calls": [payload]}
    raw = payload.get("tool_calls") if isinstance(payload, dict) else None
    if not isinstance(raw, list):
        return ()
    calls = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        arguments = item.get("arguments", {})
        text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        calls.append(ToolCall(id=f"call_{uuid.uuid4().hex[:12]}", name=item["name"], arguments=text))
    return tuple(calls)
