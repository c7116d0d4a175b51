"""Tool calls for the small GGUF chat models, held to the declared tools by a grammar.

The model reads the tools through its own chat template (Qwen2.5's `<tools>` section); what it may write is
constrained by an llguidance grammar (the grammar format of the pinned xllamacpp): either one to four calls,
each a JSON object whose `name` is a declared tool and whose `arguments` follow that tool's parameter schema,
or plain text that cannot contain a call (no `{`, `<` or backtick). A 0.5B model left free copies placeholder
names, invents tools or mixes JSON into its answer; under the grammar a call is well-formed or absent.
Once the results are in, the answer is text only (`ANSWER_GRAMMAR`): a small model offered the tools again
keeps calling them instead of answering.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from stepaudio.engines.base import ToolCall, ToolSpec

MAX_CALLS = 4
CALL_START, CALL_END = "<tool_call>", "</tool_call>"
_TEXT = r"/[^<{`\s][^<{`]*/"  # a reply that starts like text and holds nothing a call could hide in
ANSWER_GRAMMAR = f"%llguidance {{}}\nstart: {_TEXT}\n"


def openai_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """The tools as an OpenAI-style request lists them (llama.cpp renders them with the model's template)."""
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": dict(t.parameters)}} for t in tools]


def call_schema(tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """One call: `name` one of the tools, `arguments` that tool's parameters (closed to undeclared keys)."""
    return {"anyOf": [{"type": "object",
                       "properties": {"name": {"const": t.name}, "arguments": _closed(t.parameters)},
                       "required": ["name", "arguments"], "additionalProperties": False} for t in tools]}


def call_grammar(tools: Sequence[ToolSpec]) -> str:
    """A reply that is either calls of `tools` (optionally in the template's <tool_call> tags) or plain text."""
    tagged = f'("{CALL_START}\\n")? call_json ("\\n{CALL_END}")?'
    return ("%llguidance {}\n"
            f'start: calls | text\ncalls: call ("\\n" call){{0,{MAX_CALLS - 1}}}\ncall: {tagged}\n'
            f"call_json: %json {json.dumps(call_schema(tools), ensure_ascii=False)}\ntext: {_TEXT}\n")


def looks_like_call(text: str) -> bool | None:
    """Whether a reply that begins with `text` is a call (None: nothing visible yet to tell)."""
    stripped = text.lstrip()
    return stripped[0] in "{<" if stripped else None


def parse_calls(text: str, tools: Sequence[ToolSpec]) -> tuple[ToolCall, ...] | None:
    """The calls in a reply written under `call_grammar`; None when it is not well-formed calls of `tools` (a
    reply cut off by the token limit), so that nothing of it reaches the listener."""
    names = {t.name for t in tools}
    decoder = json.JSONDecoder()
    rest = text.strip()
    calls: list[ToolCall] = []
    while rest:
        rest = rest.removeprefix(CALL_START).lstrip()
        try:
            payload, end = decoder.raw_decode(rest)
        except ValueError:
            return None
        if not (isinstance(payload, dict) and payload.get("name") in names
                and isinstance(payload.get("arguments", {}), dict)):
            return None
        arguments = json.dumps(payload.get("arguments", {}), ensure_ascii=False)
        calls.append(ToolCall(id=f"call_{uuid.uuid4().hex[:12]}", name=payload["name"], arguments=arguments))
        rest = rest[end:].lstrip().removeprefix(CALL_END).lstrip()
    return tuple(calls) or None


def _closed(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """A function takes no keywords it does not declare: an object schema without `additionalProperties`
    gets `false`, so the grammar cannot invent arguments."""
    schema = dict(parameters)
    if schema.get("type", "object") == "object":
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        schema.setdefault("additionalProperties", False)
    return schema
