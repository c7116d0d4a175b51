"""AudioBuffer: absolute indexing across chunks, clipping, dropping."""

from __future__ import annotations

import numpy as np

from stepaudio.realtime.buffer import AudioBuffer


def test_slices_across_chunks_equal_the_concatenation() -> None:
    buffer = AudioBuffer()
    full = np.arange(100, dtype=np.float32)
    for start in range(0, 100, 7):
        buffer.append(full[start : start + 7])
    assert (buffer.start, buffer.end) == (0, 100)
    for start, end in [(0, 100), (3, 4), (6, 8), (13, 57), (95, 150), (-5, 2), (50, 50), (70, 60)]:
        np.testing.assert_array_equal(buffer.slice(start, end), full[max(start, 0) : max(end, max(start, 0))])


def test_drop_before_keeps_absolute_positions() -> None:
    buffer = AudioBuffer()
    full = np.arange(50, dtype=np.float32)
    buffer.append(full[:20])
    buffer.append(full[20:])
    buffer.drop_before(25)
    assert buffer.start == 25 and buffer.end == 50
    np.testing.assert_array_equal(buffer.slice(0, 30), full[25:30])
    buffer.drop_before(10)  # already gone: nothing happens
    assert buffer.start == 25
    buffer.drop_before(80)
    assert buffer.start == buffer.end == 50 and buffer.slice(0, 100).size == 0
    buffer.append(np.ones(3, np.float32))
    np.testing.assert_array_equal(buffer.slice(50, 53), np.ones(3))
