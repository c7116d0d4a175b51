"""A language-model backend behind an OpenAI-compatible `/v1/completions` server (vLLM, or our own).

The prompt goes as token ids (vLLM accepts a list of ints) or as text, with `stream: true`. vLLM's
`return_tokens_as_token_ids` makes each streamed logprob token read `token_id:N`, so the Step engine gets
exact ids back; a server without it still gives text, from which `<audio_N>` ids can be parsed.
"""

from __future__ import annotations

import itertools
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from stepaudio.engines.base import CancelToken
from stepaudio.engines.lm_backend import GeneratedToken
from stepaudio.errors import StepAudioError
from stepaudio.lm.generate import GenerationConfig

_TOKEN_ID = re.compile(r"^token_id:(\d+)$")


class RemoteLMError(StepAudioError):
    """The remote server refused, failed or answered something that is not a completion stream."""


@dataclass(frozen=True)
class RemoteLM:
    """Client for one served model. `base_url` is the server root or its `/v1` URL."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 600.0

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
        request = urllib.request.Request(
            self.completions_url,
            data=json.dumps(self.request_body(prompt, config)).encode(),
            headers=self._headers(),
            method="POST",
        )
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise RemoteLMError(f"{self.completions_url} answered {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise RemoteLMError(f"cannot reach {self.completions_url}: {exc}") from exc
        with response:
            for event in _sse_events(response):
                if cancel is not None and cancel.cancelled:
                    return
                yield from _tokens_of(event, config.stop_ids)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


def _sse_events(response: Any) -> Iterator[dict[str, Any]]:
    for raw in response:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line.startswith("data:"):
            continue
        payload = line[len("data:") :].strip()
        if payload == "[DONE]":
            return
        try:
            event = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise RemoteLMError(f"the server sent a malformed stream event: {payload[:200]}") from exc
        if "error" in event:
            raise RemoteLMError(f"the server reported an error: {event['error']}")
        yield event


def _tokens_of(event: dict[str, Any], stop_ids: Sequence[int]) -> Iterator[GeneratedToken]:
    for choice in event.get("choices", []):
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
            yield GeneratedToken(text=choice["text"], id=None)


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
