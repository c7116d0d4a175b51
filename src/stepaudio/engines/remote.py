"""A language-model backend behind an OpenAI-compatible `/v1/completions` server (vLLM, or our own).

The prompt goes as token ids (vLLM accepts a list of ints) or as text, with `stream: true`. vLLM's
`return_tokens_as_token_ids` makes each streamed logprob token read `token_id:N`, so the Step engine gets
exact ids back; from a server without it the `<audio_N>` pieces of the text are turned back into ids.
Special tokens must come back as text, unspaced (`skip_special_tokens` and `spaces_between_special_tokens`
off), or the text of a turn would differ from the native backend's.
"""

from __future__ import annotations

import itertools
import json
import re
import urllib.error
import urllib.request
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from stepaudio.engines.base import CancelToken
from stepaudio.engines.lm_backend import GeneratedToken
from stepaudio.errors import StepAudioError
from stepaudio.lm.generate import GenerationConfig
from stepaudio.text.vocab import STEP1

_TOKEN_ID = re.compile(r"^token_id:(\d+)$")
_AUDIO_SPLIT = re.compile(r"(<audio_\d+>)")
_AUDIO_ONE = re.compile(r"^<audio_(\d+)>$")


class RemoteLMError(StepAudioError):
    """The remote server refused, failed or answered something that is not a completion stream."""


@dataclass(frozen=True)
class RemoteLM:
    """Client for one served model. `base_url` is the server root or its `/v1` URL; `audio_offset` maps
    `<audio_N>` text to ids when the server cannot return ids (None: leave such text without ids)."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 600.0
    audio_offset: int | None = STEP1.audio_offset

    @property
    def completions_url(self) -> str:
        root = self.base_url.rstrip("/")
        return (root if root.endswith("/v1") else root + "/v1") + "/completions"

    def request_body(self, prompt: Sequence[int] | str, config: GenerationConfig) -> dict[str, Any]:
        sampling = config.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt if isinstance(prompt, str) else [int(i) for i in prompt],
            "max_tokens": config.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stream": True,
            "logprobs": 1,
            # vLLM extensions; other servers ignore unknown fields.
            "top_k": sampling.top_k if sampling.top_k > 0 else -1,
            "repetition_penalty": sampling.repetition_penalty,
            "stop_token_ids": list(config.stop_ids),
            "skip_special_tokens": False,
            "spaces_between_special_tokens": False,
            "return_tokens_as_token_ids": True,
            # Ours: the reference's repetition-aware TTS ban (vLLM ignores the field with a warning).
            "repetition_aware_window": sampling.ban_window if sampling.ban_repeats else 0,
        }
        if config.seed is not None:
            body["seed"] = config.seed
        return body

    def stream(
        self,
        prompt: Sequence[int] | str,
        config: GenerationConfig,
        cancel: CancelToken | None = None,
    ) -> Iterator[GeneratedToken]:
        """Stream a completion. The repetition-aware TTS ban needs the logits, which no completions API
        exposes; vLLM-served TTS runs without it (ours applies it, see `stepaudio serve-lm`)."""
        events = post_events(self.completions_url, self.request_body(prompt, config), self.api_key, self.timeout)
        for event in events:
            if cancel is not None and cancel.cancelled:
                events.close()
                return
            yield from _tokens_of(event, config.stop_ids, self.audio_offset)


def post_events(url: str, body: dict[str, Any], api_key: str | None = None,
                timeout: float = 600.0) -> Generator[dict[str, Any], None, None]:
    """POST a streamed request and yield its events (see `read_events`); refusals, unreachable servers and
    streams that stop answering raise RemoteLMError. Closing the generator closes the connection."""
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        detail = error_message(exc.read().decode(errors="replace"))
        raise RemoteLMError(f"{url} answered {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise RemoteLMError(f"cannot reach {url}: {exc}") from exc
    with response:
        try:
            yield from read_events(response, url)
        except OSError as exc:  # a read timeout or a dropped connection in the middle of the stream
            raise RemoteLMError(f"{url} stopped answering: {exc}") from exc


def read_events(response: Any, url: str) -> Iterator[dict[str, Any]]:
    """The completion events of an SSE stream up to `[DONE]`; a plain JSON completion (a server that ignored
    `stream`) is one event. Errors reported in the stream, bodies that are neither, and streams cut before
    `[DONE]` raise RemoteLMError."""
    lines = (raw.decode("utf-8", errors="replace").strip() for raw in response)
    first = next((line for line in lines if line), "")
    if not first.startswith(("data:", ":", "event:", "id:", "retry:")):
        body = first + "".join(lines)
        try:
            event = json.loads(body)
        except json.JSONDecodeError:
            raise RemoteLMError(f"{url} answered neither an event stream nor JSON: {body[:200]!r}") from None
        yield _checked(event)
        return
    for line in itertools.chain([first], lines):
        if not line.startswith("data:"):
            continue
        payload = line[len("data:") :].strip()
        if payload == "[DONE]":
            return
        try:
            event = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise RemoteLMError(f"the server sent a malformed stream event: {payload[:200]}") from exc
        yield _checked(event)
    raise RemoteLMError(f"{url} closed the stream before [DONE]: the completion may be cut short")


def _checked(event: Any) -> dict[str, Any]:
    """The event itself, unless it is an error (vLLM's `{"error": {...}}` or older `{"object": "error"}`)."""
    if not isinstance(event, dict):
        raise RemoteLMError(f"the server sent {type(event).__name__} where a completion event belongs")
    if "error" in event or event.get("object") == "error":
        raise RemoteLMError(f"the server reported an error: {error_message(event)}")
    return event


def error_message(body: str | dict[str, Any]) -> str:
    """The message of an OpenAI / vLLM / FastAPI error body, else the body's start."""
    data: Any = body
    if isinstance(body, str):
        try:
            data = json.loads(body)
        except json.JSONDecodeError:
            return body[:500]
    if isinstance(data, dict):
        inner = data.get("error", data)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"][:500]
        if isinstance(inner, str):
            return inner[:500]
        if "detail" in data:
            return str(data["detail"])[:500]
    return json.dumps(data)[:500]


def _tokens_of(event: dict[str, Any], stop_ids: Sequence[int], audio_offset: int | None) -> Iterator[GeneratedToken]:
    for choice in event.get("choices") or []:  # a usage-only event has none
        logprobs = choice.get("logprobs") or {}
        tokens = logprobs.get("tokens") or []
        ids = [_token_id(t) for t in tokens]
        if tokens and all(i is not None for i in ids):
            offsets = logprobs.get("text_offset") or []
            texts = _split_text(choice.get("text", ""), offsets, len(tokens))
            for token_id, text in zip(ids, texts, strict=True):
                if token_id is not None and token_id not in stop_ids:
                    yield GeneratedToken(text=text, id=token_id)
        elif choice.get("text"):
            yield from _text_tokens(choice["text"], audio_offset)


def _text_tokens(text: str, audio_offset: int | None) -> Iterator[GeneratedToken]:
    """Text without ids: each `<audio_N>` piece becomes its own token with its id, the rest stays text."""
    if audio_offset is None:
        yield GeneratedToken(text=text, id=None)
        return
    for piece in _AUDIO_SPLIT.split(text):
        match = _AUDIO_ONE.match(piece)
        if match:
            yield GeneratedToken(text=piece, id=audio_offset + int(match.group(1)))
        elif piece:
            yield GeneratedToken(text=piece, id=None)


def _token_id(token: Any) -> int | None:
    match = _TOKEN_ID.match(str(token))
    return int(match.group(1)) if match else None


def _split_text(text: str, offsets: Sequence[int], count: int) -> list[str]:
    """Per-token text from the chunk text and absolute offsets; the whole text on the first token otherwise."""
    if len(offsets) == count and count:
        base = offsets[0]
        bounds = [o - base for o in offsets] + [len(text)]
        if all(0 <= a <= b <= len(text) for a, b in itertools.pairwise(bounds)):
            return [text[a:b] for a, b in itertools.pairwise(bounds)]
    return [text] + [""] * (count - 1)
