"""What the Step engine asks of a language model, whether it runs in this process or behind vLLM.

The Step models speak in token ids: prompts are built as ids (TTS) or as text (chat), and TTS answers are
`<audio_N>` ids. A backend takes a prompt (ids or text) and a `GenerationConfig` from `stepaudio.lm`
and streams tokens back, each with its id when the backend knows it and always with its text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from stepaudio.engines.base import CancelToken
from stepaudio.lm.generate import GenerationConfig


@dataclass(frozen=True)
class GeneratedToken:
    """One generated token: `id` is None only when a remote server reports text alone."""

    text: str
    id: int | None = None


class LMBackend(Protocol):
    """Streams the continuation of one prompt; stop ids end the stream and are not yielded."""

    def stream(
        self,
        prompt: Sequence[int] | str,
        config: GenerationConfig,
        cancel: CancelToken | None = None,
    ) -> Iterator[GeneratedToken]: ...
