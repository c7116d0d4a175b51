"""Cut streamed chat text into sentences, so speech synthesis can start before the reply is complete."""

from __future__ import annotations

import re

# A sentence ends at . ! ? … followed by a space (so "3.14" is not cut), or at CJK end punctuation or a newline.
_BOUNDARY = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|(?<=[。！？；\n])")


class SentenceSplitter:
    """Feed text deltas, get back finished sentences; `flush` returns the rest. Sentences shorter than
    `min_chars` are joined to the next so the synthesiser is not called for a lone 'Ok.'."""

    def __init__(self, min_chars: int = 12) -> None:
        self.min_chars = min_chars
        self._buffer = ""

    def feed(self, text: str) -> list[str]:
        self._buffer += text
        sentences: list[str] = []
        start = 0
        for match in _BOUNDARY.finditer(self._buffer):
            end = match.end()
            piece = self._buffer[start:end].strip()
            if len(piece) >= self.min_chars:
                sentences.append(piece)
                start = end
        self._buffer = self._buffer[start:]
        return sentences

    def flush(self) -> str:
        rest, self._buffer = self._buffer.strip(), ""
        return rest
