"""The input audio of a session, addressed by absolute sample index, kept as a list of chunks.

Appending never copies what is already held (a long manual-commit buffer would otherwise be copied on every
20 ms append); slicing concatenates only the chunks it touches; audio before the uncommitted part is dropped.
"""

from __future__ import annotations

import numpy as np


class AudioBuffer:
    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._origin = 0  # absolute index of the first held sample
        self._length = 0

    @property
    def start(self) -> int:
        return self._origin

    @property
    def end(self) -> int:
        return self._origin + self._length

    def append(self, samples: np.ndarray) -> None:
        if samples.size:
            self._chunks.append(np.asarray(samples, dtype=np.float32).reshape(-1))
            self._length += samples.size

    def slice(self, start: int, end: int) -> np.ndarray:
        """Samples [start, end) by absolute index, clipped to what is held."""
        start, end = max(start, self._origin), min(end, self.end)
        if end <= start:
            return np.zeros(0, np.float32)
        pieces = []
        position = self._origin
        for chunk in self._chunks:
            chunk_end = position + chunk.size
            if chunk_end > start and position < end:
                pieces.append(chunk[max(0, start - position) : min(chunk.size, end - position)])
            if chunk_end >= end:
                break
            position = chunk_end
        return np.concatenate(pieces)

    def drop_before(self, index: int) -> None:
        """Forget samples before absolute `index` (whole chunks, and the head of the one it falls in)."""
        while self._chunks and self._origin < index:
            head = self._chunks[0]
            cut = min(head.size, index - self._origin)
            if cut == head.size:
                self._chunks.pop(0)
            else:
                self._chunks[0] = head[cut:]
            self._origin += cut
            self._length -= cut
