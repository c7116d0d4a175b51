"""Python tools a chat model may call, and the loop that runs them and feeds the results back.

Works with any `ChatModel`: each engine parses calls in its model's own format into `ToolCall`s.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stepaudio.engines.base import CancelToken, ChatDelta, ChatMessage, ChatModel, GenerationOptions, ToolCall, ToolSpec


@dataclass(frozen=True)
class ToolRegistry:
    """Callables by name with the specs shown to the model; each takes keyword arguments from the call."""

    functions: Mapping[str, Callable[..., Any]]
    specs: tuple[ToolSpec, ...] = ()

    def run(self, call: ToolCall) -> str:
        function = self.functions.get(call.name)
        if function is None:
            return json.dumps({"error": f"unknown tool {call.name!r}"}, ensure_ascii=False)
        try:
            arguments = json.loads(call.arguments) if call.arguments else {}
            if not isinstance(arguments, dict):
                raise TypeError("arguments must be a JSON object")
            result = function(**arguments)
        except Exception as exc:  # a failing tool is reported to the model, never crashes the chat
            return json.dumps({"error": f"{type(exc).__name__}: {exc}"}, ensure_ascii=False)
        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)


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

    Ends with the final round's finish delta, or 'length' when `max_rounds` rounds all ended in calls.
    """
    history = list(messages)
    for _ in range(max_rounds):
        text: list[str] = []
        calls: list[ToolCall] = []
        finish: ChatDelta | None = None
        for delta in chat.respond(history, registry.specs, options, cancel):
            if delta.finish_reason:
                finish = delta
                continue
            text.append(delta.text)
            calls.extend(delta.tool_calls)
            yield delta
        if not calls or (cancel is not None and cancel.cancelled):
            yield finish or ChatDelta(finish_reason="stop")
            return
        assistant = ChatMessage("assistant", "".join(text), tool_calls=tuple(calls))
        history.append(assistant)
        yield assistant
        for call in calls:
            result = ChatMessage("tool", registry.run(call), tool_call_id=call.id, name=call.name)
            history.append(result)
            yield result
    yield ChatDelta(finish_reason="length")
