"""What the Step engine asks of a language model, whether it runs in this process or behind vLLM.

The Step models speak in token ids: prompts are built as ids (TTS) or as text (chat), and TTS answers are
`<audio_N>` ids. A backend therefore takes a prompt (ids or text) and streams tokens back, each with its
id when the backend knows it and always with its text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from stepaudio.engines.base import CancelToken

STOP_IDS = (3,)  # <|EOT|>


@dataclass(frozen=True)
class SamplingParams:
    """Sampling as the reference runs it; `repetition_window` > 0 turns on the TTS repetition-aware rule."""

    max_new_tokens: int = 2048
    temperature: float = 0.7
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    repetition_window: int = 0
    stop_ids: tuple[int, ...] = STOP_IDS
    seed: int | None = None

    @classmethod
    def tts(cls, max_new_tokens: int = 4096, seed: int | None = None) -> SamplingParams:
        return cls(max_new_tokens=max_new_tokens, temperature=0.7, top_k=50, top_p=1.0, repetition_window=10, seed=seed)

    @classmethod
    def chat(cls, max_new_tokens: int = 2048, seed: int | None = None) -> SamplingParams:
        return cls(max_new_tokens=max_new_tokens, temperature=0.7, top_k=50, top_p=0.9, seed=seed)

    @classmethod
    def greedy(cls, max_new_tokens: int = 64) -> SamplingParams:
        return cls(max_new_tokens=max_new_tokens, temperature=0.0, top_k=0, top_p=1.0)


@dataclass(frozen=True)
class GeneratedToken:
    """One generated token: `id` is None only when a remote server reports text alone."""

    text: str
    id: int | None = None


@dataclass(frozen=True)
class FinishInfo:
    reason: str  # "stop", "length" or "cancelled"
    prompt_tokens: int
    completion_tokens: int


class LMBackend(Protocol):
    """Streams the continuation of one prompt; stop ids are not yielded."""

    def stream(
        self,
        prompt: Sequence[int] | str,
        params: SamplingParams,
        cancel: CancelToken | None = None,
    ) -> Iterator[GeneratedToken]: ...
