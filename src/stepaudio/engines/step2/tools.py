"""Tool calls in Step-Audio 2's own format, and its voice-switch tool.

Tools are declared in a `tool_json_schemas` turn (`text.step2_prompts.tools_content`); the model writes a
call as `<tool_call>function\\n{name}\\n{JSON arguments}</tool_call>` (the format of the vLLM/SGLang
`step_audio_2` tool parsers; REFERENCE-SA2.md §8), and reads the result in an `input` turn. Earlier calls
are replayed in the assistant turn in the same format.

`timbre_rag` is the tool the model was trained to switch its voice with ("change the output timbre from a
Chinese description of it"; name and schema as StepFun's StepEval-Audio-Toolcall benchmark declares it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from stepaudio.engines.base import ToolCall, ToolSpec
from stepaudio.engines.tools import MarkedCallParser

CALL_START = "<tool_call>"
CALL_END = "</tool_call>"
CALL_KIND = "function"

TIMBRE_TOOL = ToolSpec(
    name="timbre_rag",
    description=("通过给定一个中文的音色描述,改变模型输出的音色,例如‘一个正宗北京大爷的口音’, "
                 "注意无法进行情感、语速、音量等韵律的调整"),
    parameters={"type": "object", "properties": {"query": {"type": "string", "description": "人物音色描述(中文)"}},
                "required": ["query"]},
)


def declared(tools: Sequence[ToolSpec]) -> list[Mapping[str, Any]]:
    """The tools as `tools_content` takes them."""
    return [{"name": t.name, "description": t.description, "parameters": dict(t.parameters)} for t in tools]


def render_call(call: ToolCall) -> str:
    """A call as the model writes it (for replaying history)."""
    return f"{CALL_START}{CALL_KIND}\n{call.name}\n{call.arguments or '{}'}{CALL_END}"


def parse_call(body: str, call_id: str) -> ToolCall:
    """A ToolCall from the text between the markers: `function`, the name, the JSON arguments, one per line.
    Arguments that are not JSON are kept as written (the tool loop reports them to the model)."""
    lines = body.strip().split("\n", 2)
    if lines and lines[0].strip() == CALL_KIND:
        lines = lines[1:]
    name = lines[0].strip() if lines else ""
    rest = "\n".join(lines[1:]).strip() or "{}"
    try:
        arguments = json.dumps(json.loads(rest), ensure_ascii=False)
    except json.JSONDecodeError:
        arguments = rest
    return ToolCall(call_id, name or "invalid", arguments)


class ToolCallParser(MarkedCallParser):
    """Step-Audio 2's calls: between <tool_call> and </tool_call>."""

    def __init__(self, id_prefix: str = "call_") -> None:
        super().__init__(CALL_START, CALL_END, parse_call, id_prefix)
