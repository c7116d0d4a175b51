"""Chat with a small GGUF model through xllamacpp's in-process llama.cpp server (OpenAI-style requests).

The server call blocks and reports each streamed piece to a callback, so it runs in a worker thread that
feeds a queue; the generator the caller iterates reads that queue. Returning True from the callback stops
llama.cpp, which is how a `CancelToken` or an abandoned generator ends a generation early.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepaudio.engines.base import CancelToken, ChatDelta, ChatMessage, GenerationOptions, ToolSpec
from stepaudio.engines.lite.tools import parse_tool_calls, tools_prompt
from stepaudio.errors import MissingExtraError, StepAudioError

VOICE_SYSTEM_PROMPT = (
    "You are a friendly voice assistant. Your replies are spoken aloud, so answer in one to three short, "
    "plain sentences without lists, markdown, code or emoji. Reply in the language the user speaks."
)
_DONE = object()


@dataclass(frozen=True)
class LlamaOptions:
    threads: int = 1
    context: int = 2048
    system_prompt: str = VOICE_SYSTEM_PROMPT
    max_new_tokens: int = 160


class LlamaChat:
    """`ChatModel` over one GGUF file; one generation at a time (calls are serialised by a lock)."""

    def __init__(self, model_path: str | Path, options: LlamaOptions | None = None) -> None:
        try:
            import xllamacpp
        except ImportError as exc:
            raise MissingExtraError("lite", "xllamacpp") from exc
        self.options = options or LlamaOptions()
        self.model_path = Path(model_path)
        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.n_ctx = self.options.context
        for cpu in (params.cpuparams, params.cpuparams_batch):
            cpu.n_threads = self.options.threads
            cpu.poll = 0  # sleep rather than spin while waiting: the cores are shared with ASR and TTS
        params.n_parallel = 1
        params.verbosity = -1
        params.endpoint_metrics = False
        self._server = xllamacpp.Server(params)
        self._lock = threading.Lock()

    def respond(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec] | None = None,
        options: GenerationOptions | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[ChatDelta]:
        request = self._request(messages, tools, options or GenerationOptions())
        if tools:
            yield from self._respond_with_tools(request, cancel)
        else:
            yield from self._stream(request, cancel)

    def complete(self, messages: Sequence[ChatMessage], options: GenerationOptions | None = None) -> str:
        """The whole reply as one string (no tools)."""
        return "".join(delta.text for delta in self.respond(messages, options=options))

    def warmup(self) -> None:
        """Evaluate the system prompt once so its KV cache is ready and the first answer starts sooner."""
        for _ in self.respond([ChatMessage("user", "Hi")], options=GenerationOptions(max_new_tokens=1)):
            pass

    def _request(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None, options: GenerationOptions
    ) -> dict[str, Any]:
        history = list(messages)
        system = self.options.system_prompt
        if history and history[0].role == "system":
            system = history.pop(0).content
        if tools:
            system = system + "\n\n" + tools_prompt(tools)
        chat = [{"role": "system", "content": system}, *(_to_openai(message) for message in history)]
        request: dict[str, Any] = {
            "messages": chat,
            "stream": True,
            "max_tokens": min(options.max_new_tokens, self.options.max_new_tokens),
            "temperature": options.temperature,
            "top_p": options.top_p,
            "top_k": options.top_k,
            "cache_prompt": True,
        }
        if options.seed is not None:
            request["seed"] = options.seed
        return request

    def _stream(self, request: dict[str, Any], cancel: CancelToken | None) -> Iterator[ChatDelta]:
        pieces: queue.Queue[Any] = queue.Queue()
        stop = threading.Event()

        def on_chunk(chunk: Any) -> bool:
            pieces.put(chunk)
            return stop.is_set() or bool(cancel and cancel.cancelled)

        def work() -> None:
            try:
                with self._lock:
                    self._server.handle_chat_completions(request, on_chunk)
            except Exception as exc:  # reported to the reader, never lost in the thread
                pieces.put(exc)
            finally:
                pieces.put(_DONE)

        thread = threading.Thread(target=work, name="lite-chat", daemon=True)
        thread.start()
        finish: str | None = None
        try:
            while True:
                item = pieces.get()
                if item is _DONE:
                    break
                if isinstance(item, Exception):
                    raise StepAudioError(f"llama.cpp generation failed: {item}") from item
                text, reason = _parse_chunk(item)
                finish = reason or finish
                if text and not (cancel and cancel.cancelled):
                    yield ChatDelta(text=text)
        finally:
            stop.set()
            thread.join()
        if cancel and cancel.cancelled:
            finish = "cancelled"
        yield ChatDelta(finish_reason=_finish(finish))

    def _respond_with_tools(self, request: dict[str, Any], cancel: CancelToken | None) -> Iterator[ChatDelta]:
        """Tool replies are JSON, which must not be spoken: collect the reply, then emit text or tool calls."""
        text_parts: list[str] = []
        finish: str | None = None
        for delta in self._stream(request, cancel):
            text_parts.append(delta.text)
            finish = delta.finish_reason or finish
        text, calls = parse_tool_calls("".join(text_parts))
        if calls and finish != "cancelled":
            yield ChatDelta(text=text, tool_calls=calls, finish_reason="tool_calls")
        else:
            yield ChatDelta(text=text, finish_reason=_finish(finish))


def _to_openai(message: ChatMessage) -> dict[str, Any]:
    content = message.content
    if message.role == "tool":
        return {"role": "user", "content": f"Result of {message.name or 'the tool'}: {content}"}
    if message.role == "assistant" and message.tool_calls:
        calls = [{"name": call.name, "arguments": json.loads(call.arguments or "{}")} for call in message.tool_calls]
        return {"role": "assistant", "content": json.dumps({"tool_calls": calls}, ensure_ascii=False)}
    return {"role": message.role, "content": content}


def _parse_chunk(chunk: Any) -> tuple[str, str | None]:
    if isinstance(chunk, str):
        chunk = json.loads(chunk)
    if isinstance(chunk, dict) and "error" in chunk:
        raise StepAudioError(f"llama.cpp: {chunk['error']}")
    choices = chunk.get("choices") or [{}] if isinstance(chunk, dict) else [{}]
    choice = choices[0]
    delta = choice.get("delta") or choice.get("message") or {}
    return delta.get("content") or "", choice.get("finish_reason")


def _finish(reason: str | None) -> Any:
    return reason if reason in ("stop", "length", "tool_calls", "cancelled") else "stop"
