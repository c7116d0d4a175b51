"""Chat with a small GGUF model through xllamacpp's in-process llama.cpp server (OpenAI-style requests).

The server call blocks and reports each streamed piece to a callback, so it runs in a worker thread that
feeds a queue; the generator the caller iterates reads that queue. Returning True from the callback stops
llama.cpp, which is how a `CancelToken` or an abandoned generator ends a generation early.

Tools take two steps, because a 0.5B model decides well whether to call a tool only from the current
question (with the history before it, it answers from memory, or calls tools for a joke): first the
question alone, with the tools shown by the model's template and a grammar that allows a declared call or
text (engines/lite/tools.py); text stops that pass at its first token, and the answer is written from the
whole history, where a call's results are answered too, in text only. The two prompts keep their
KV caches in two llama.cpp slots, so each step evaluates only what is new.

Concurrent conversations decode together: up to `parallel` requests run at once (two slots each, for the
decision's and the conversation's caches), and llama.cpp's continuous batching evaluates their next tokens
in one batch, so a session's first words do not wait for another's whole reply. A reply must not depend on
who else is talking, nor on which slot it lands and how much of its prompt that slot had cached. llama.cpp
computes a token's row differently depending on how many tokens share its evaluation pass, so three settings
hold every pass to the kernels a single token uses: the weights are not repacked (the repacked AVX2 kernels sum
a batch of rows in another order than one row), flash attention is on (without it, a pass of 2 tokens differs
from one of 1), and a pass holds at most 7 tokens: from 8 on, the Q5_0/Q8_0 weights of the default Qwen model
and flash attention take their batched paths, so a prompt's logits depended on where the cached prefix ended
(up to 2.7 in a logprob) and on the other sessions' tokens in the same pass (5 of 6 greedy replies changed with
6 at once). A prompt's new part is therefore evaluated 7 tokens at a time, which costs reading speed, not the
cache: a spoken turn's 10-18 new tokens took 0.50-0.89 s against 0.46-0.76 s in 512-token passes (means of 3,
loaded 2-core EPYC), 481 new tokens 1.7x as long; a conversation's cached history is still not read again.

A reply asked for while nothing else runs goes to a second llama.cpp context over the same mapped weights with
`solo_threads` threads (the first has `threads`, one by default). Several threads help only while they have the
cores: on a 2-core EPYC two threads decode 37-40 tokens/s alone against 21 for one, but 9-12 beside one busy
TTS thread, because each waits for the other at every layer's barrier. Replies are the same with any thread
count (each row's sums are computed by one thread in one order), so where a reply runs never changes it.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepaudio.engines.base import (
    CancelToken,
    ChatDelta,
    ChatMessage,
    GenerationOptions,
    ToolCall,
    ToolSpec,
    Usage,
)
from stepaudio.engines.lite.tools import ANSWER_GRAMMAR, call_grammar, looks_like_call, openai_tools, parse_calls
from stepaudio.errors import MissingExtraError, StepAudioError

VOICE_SYSTEM_PROMPT = (
    "You are a friendly voice assistant. Your replies are spoken aloud, so answer in one to three short, "
    "plain sentences without lists, markdown, code or emoji. Reply in the language the user speaks."
)
_DONE = object()
_SLOTS_PER_REQUEST = 2  # the conversation's cache and the tool decision's
_FLASH_ATTENTION_ON = 1  # llama.cpp's LLAMA_FLASH_ATTN_TYPE_ENABLED
_TOKENS_PER_PASS = 7  # the most that still run a single token's kernels (module docstring)


@dataclass(frozen=True)
class LlamaOptions:
    """`parallel`: generations that decode at once in one batch (more wait their turn); 1 = one at a time."""

    threads: int = 1
    context: int = 2048  # per slot
    system_prompt: str = VOICE_SYSTEM_PROMPT
    max_new_tokens: int = 160
    parallel: int = 4
    prepare: bool = True  # read a conversation's prompt while the user still speaks (`prepare`)
    solo_threads: int = 0  # threads of a reply asked for while nothing else runs (0 or <= threads: no such context)


class LlamaChat:
    """`ChatModel` over one GGUF file; up to `options.parallel` generations decode together."""

    def __init__(self, model_path: str | Path, options: LlamaOptions | None = None) -> None:
        try:
            import xllamacpp
        except ImportError as exc:
            raise MissingExtraError("lite", "xllamacpp") from exc
        self.options = options or LlamaOptions()
        if self.options.parallel < 1:
            raise StepAudioError(f"parallel is at least 1, not {self.options.parallel}")
        self.model_path = Path(model_path)
        self._shared = _Lane(xllamacpp.Server(_params(xllamacpp, model_path, self.options.threads,
                                                      _SLOTS_PER_REQUEST * self.options.parallel,
                                                      self.options.context)),
                             threading.BoundedSemaphore(self.options.parallel))
        self._solo: _Lane | None = None
        if self.options.solo_threads > self.options.threads:
            self._solo = _Lane(xllamacpp.Server(_params(xllamacpp, model_path, self.options.solo_threads,
                                                        _SLOTS_PER_REQUEST, self.options.context)),
                               threading.BoundedSemaphore(1))
        self._preparing: dict[int, threading.Event] = {}  # conversation (its turns before the new one) -> in flight
        self._preparing_lock = threading.Lock()

    def respond(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec] | None = None,
        options: GenerationOptions | None = None,
        cancel: CancelToken | None = None,
        alone: bool = False,
    ) -> Iterator[ChatDelta]:
        """`alone`: the caller knows nothing else runs now, so the reply may take the `solo_threads` context."""
        options = options or GenerationOptions()
        with self._preparing_lock:
            pending = self._preparing.get(_conversation_key(messages))
        if pending is not None:  # its slot holds this prompt's start once done: a free slot would read it all again
            pending.wait(5.0)
        lane = self._claim_solo() if alone else None
        try:
            if tools and not (messages and messages[-1].role == "tool"):
                yield from self._call_or_answer(messages, tools, options, cancel, lane)
                return
            tool_turns = any(m.role == "tool" or m.tool_calls for m in messages)
            # where tools were offered or ran, the answer is held to text: never a call's JSON spoken aloud
            grammar = ANSWER_GRAMMAR if tools or tool_turns else None
            yield from self._stream(self._request(messages, options, grammar=grammar), cancel, lane)
        finally:
            if lane is not None:
                lane.gate.release()

    def _claim_solo(self) -> _Lane | None:
        """The solo context with its one request taken, or None when there is none or it is busy."""
        return self._solo if self._solo is not None and self._solo.gate.acquire(blocking=False) else None

    def prepare(self, messages: Sequence[ChatMessage], alone: bool = False) -> None:
        """Read the prompt of `messages` (the conversation and the words of a turn still being spoken) into a
        slot now, so the reply reads only what came after: llama.cpp gives a request the slot sharing the
        longest start with it. On 2 cores a 35-token question is ~0.3-0.5 s of reading on one thread, most of
        a reply's first-token time. Skipped when every generation slot is busy or this conversation is being
        prepared already; a failure only costs the reply that time. `alone`: into the solo context, where the
        reply goes if nothing else runs then either."""
        if not self.options.prepare or not messages or messages[-1].role != "user":
            return
        key = _conversation_key(messages)
        done = threading.Event()
        with self._preparing_lock:
            if key in self._preparing:
                return
            lane = self._claim_solo() if alone else None
            if lane is None:
                lane = self._shared
                if not lane.gate.acquire(blocking=False):
                    return
            self._preparing[key] = done
        try:
            request = self._request(messages, GenerationOptions(max_new_tokens=1, temperature=0.0))
            request["stream"] = False
            lane.server.handle_chat_completions(request, lambda _: False)
        except Exception:  # best effort: the reply reads the whole prompt itself
            pass
        finally:
            with self._preparing_lock:
                del self._preparing[key]
            done.set()
            lane.gate.release()

    def complete(self, messages: Sequence[ChatMessage], options: GenerationOptions | None = None) -> str:
        """The whole reply as one string (no tools)."""
        return "".join(delta.text for delta in self.respond(messages, options=options))

    def warmup(self) -> None:
        """Evaluate the system prompt in every slot of both contexts at once, so the first answer in any slot
        starts sooner."""
        request = self._request([ChatMessage("user", "Hi")], GenerationOptions(max_new_tokens=1))
        request["stream"] = False
        failures: list[BaseException] = []

        def warm(lane: _Lane) -> None:
            try:
                lane.server.handle_chat_completions(request, lambda _: False)
            except Exception as exc:  # reported below, never lost in the thread
                failures.append(exc)

        slots = [(self._shared, _SLOTS_PER_REQUEST * self.options.parallel)]
        if self._solo is not None:
            slots.append((self._solo, _SLOTS_PER_REQUEST))
        threads = [threading.Thread(target=warm, args=(lane,), name="lite-chat-warmup")
                   for lane, count in slots for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise StepAudioError(f"llama.cpp warm-up failed: {failures[0]}") from failures[0]

    def _request(self, messages: Sequence[ChatMessage], options: GenerationOptions, *,
                 tools: Sequence[ToolSpec] = (), grammar: str | None = None) -> dict[str, Any]:
        history = list(messages)
        system = self.options.system_prompt
        if history and history[0].role == "system":
            system = history.pop(0).content
        chat = [{"role": "system", "content": system}, *(_to_openai(message) for message in history)]
        request: dict[str, Any] = {
            "messages": chat,
            "stream": True,
            "max_tokens": min(options.max_new_tokens, self.options.max_new_tokens),
            "temperature": options.temperature,
            "top_p": options.top_p,
            "top_k": options.top_k,
            "cache_prompt": True,
            "stream_options": {"include_usage": True},
        }
        if options.seed is not None:
            request["seed"] = options.seed
        if tools:  # the template shows the tools; the grammar, not llama.cpp's parser, shapes a call
            request.update(tools=openai_tools(tools), tool_choice="none")
        if grammar is not None:
            request["grammar"] = grammar
        return request

    def _stream(self, request: dict[str, Any], cancel: CancelToken | None,
                solo: _Lane | None = None) -> Generator[ChatDelta, None, None]:
        """Generate on `solo` (its request already taken) or else in the shared context, waiting for a place."""
        pieces: queue.Queue[Any] = queue.Queue()
        stop = threading.Event()

        def on_chunk(chunk: Any) -> bool:
            pieces.put(chunk)
            return stop.is_set() or bool(cancel and cancel.cancelled)

        def work() -> None:
            try:
                if solo is not None:
                    solo.server.handle_chat_completions(request, on_chunk)
                else:
                    with self._shared.gate:
                        self._shared.server.handle_chat_completions(request, on_chunk)
            except Exception as exc:  # reported to the reader, never lost in the thread
                pieces.put(exc)
            finally:
                pieces.put(_DONE)

        thread = threading.Thread(target=work, name="lite-chat", daemon=True)
        thread.start()
        finish: str | None = None
        usage: Usage | None = None
        try:
            while True:
                item = pieces.get()
                if item is _DONE:
                    break
                if isinstance(item, Exception):
                    raise StepAudioError(f"llama.cpp generation failed: {item}") from item
                text, reason, counted = _parse_chunk(item)
                finish = reason or finish
                usage = counted or usage
                if text and not (cancel and cancel.cancelled):
                    yield ChatDelta(text=text)
        finally:
            stop.set()
            thread.join()
        if cancel and cancel.cancelled:
            finish = "cancelled"
        yield ChatDelta(finish_reason=_finish(finish), usage=usage)

    def _call_or_answer(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec], options: GenerationOptions,
                        cancel: CancelToken | None, solo: _Lane | None) -> Iterator[ChatDelta]:
        """Step one on the current question: a call is collected, checked against the tools and sent with the
        finish reason (one cut short by the token limit is dropped, never spoken); text ends the step at its
        first visible character, and the answer comes from the whole history."""
        held: list[str] = []
        calling: bool | None = None
        finish: str | None = None
        usage: Usage | None = None
        decision = self._stream(self._request(_current_turn(messages), options, tools=tools,
                                              grammar=call_grammar(tools)), cancel, solo)
        try:
            for delta in decision:
                finish = delta.finish_reason or finish
                usage = delta.usage or usage
                held.append(delta.text)
                calling = looks_like_call("".join(held))
                if calling is False:
                    break
        finally:
            decision.close()
        if calling is False:
            yield from self._stream(self._request(messages, options, grammar=ANSWER_GRAMMAR), cancel, solo)
            return
        if calling and finish != "cancelled":
            calls = parse_calls("".join(held), tools)
            if calls:
                yield ChatDelta(tool_calls=calls, finish_reason="tool_calls", usage=usage)
                return
            finish = "length" if finish == "length" else "stop"
        yield ChatDelta(finish_reason=_finish(finish), usage=usage)


@dataclass(frozen=True)
class _Lane:
    """One llama.cpp context and the gate that holds it to the requests it decodes at once."""

    server: Any
    gate: threading.BoundedSemaphore


def _params(xllamacpp: Any, model_path: str | Path, threads: int, slots: int, context: int) -> Any:
    """A context's settings: see the module docstring for the batch-invariant ones."""
    params = xllamacpp.CommonParams()
    params.model.path = str(model_path)
    params.n_ctx = context * slots
    for cpu in (params.cpuparams, params.cpuparams_batch):
        cpu.n_threads = threads
        cpu.poll = 0  # sleep rather than spin while waiting: the cores are shared with ASR and TTS
    params.n_parallel = slots  # a slot is picked by the prompt it has cached
    params.cont_batching = True
    params.kv_unified = False
    params.no_extra_bufts = True  # batch-invariant: see the module docstring
    params.flash_attn_type = _FLASH_ATTENTION_ON
    params.n_ubatch = _TOKENS_PER_PASS  # a prompt still goes in as one request, split into passes
    params.verbosity = -1
    params.endpoint_metrics = False
    return params


def _current_turn(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The system prompt (when the conversation has its own) and the trailing user messages (all messages when
    none trail)."""
    start = len(messages)
    while start > 0 and messages[start - 1].role == "user":
        start -= 1
    if start == len(messages):
        return list(messages)
    system = [messages[0]] if messages and messages[0].role == "system" and start > 0 else []
    return [*system, *messages[start:]]


def _conversation_key(messages: Sequence[ChatMessage]) -> int:
    """The conversation a request continues: its messages before the trailing user turn."""
    end = len(messages)
    while end > 0 and messages[end - 1].role == "user":
        end -= 1
    return hash(tuple((m.role, m.content, m.tool_call_id or "") for m in messages[:end]))


def _to_openai(message: ChatMessage) -> dict[str, Any]:
    """OpenAI-style messages: llama.cpp renders calls and results with the model's own template."""
    if message.role == "tool":
        return {"role": "tool", "content": message.content, "tool_call_id": message.tool_call_id or ""}
    if message.role == "assistant" and message.tool_calls:
        return {"role": "assistant", "content": message.content,
                "tool_calls": [_call_to_openai(call) for call in message.tool_calls]}
    return {"role": message.role, "content": message.content}


def _call_to_openai(call: ToolCall) -> dict[str, Any]:
    try:
        arguments = json.dumps(json.loads(call.arguments or "{}"), ensure_ascii=False)
    except ValueError:  # a client's malformed history: the template needs a JSON object
        arguments = "{}"
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


def _parse_chunk(chunk: Any) -> tuple[str, str | None, Usage | None]:
    """A streamed chunk's text, finish reason and (on the last one) llama.cpp's token counts."""
    if isinstance(chunk, str):
        chunk = json.loads(chunk)
    if isinstance(chunk, dict) and "error" in chunk:
        raise StepAudioError(f"llama.cpp: {chunk['error']}")
    choices = chunk.get("choices") or [{}] if isinstance(chunk, dict) else [{}]
    choice = choices[0]
    delta = choice.get("delta") or choice.get("message") or {}
    counted = chunk.get("usage") if isinstance(chunk, dict) else None
    usage = None
    if isinstance(counted, dict) and "prompt_tokens" in counted:
        details = counted.get("prompt_tokens_details") or {}
        usage = Usage(int(counted["prompt_tokens"]), int(counted.get("completion_tokens", 0)),
                      int(details.get("cached_tokens", 0)))
    return delta.get("content") or "", choice.get("finish_reason"), usage


def _finish(reason: str | None) -> Any:
    return reason if reason in ("stop", "length", "tool_calls", "cancelled") else "stop"
