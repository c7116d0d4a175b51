"""Silence trimming of voice prompts, with the reference's frame rule and padding.

The reference trims a TTS prompt wav where the frame RMS is more than `top_db` below the loudest frame
(librosa's rule: centred frames of 512 samples, hop 128), then keeps 50 ms before the speech and makes the
result a whole number of 240-sample hops plus 270 ms, padding with zeros where needed.
"""

from __future__ import annotations

import math

import numpy as np


def nonsilent_bounds(
    samples: np.ndarray, top_db: float = 20.0, frame_length: int = 512, hop_length: int = 128
) -> tuple[int, int]:
    """[start, end) of the region whose frame RMS is within `top_db` of the loudest frame; (librosa's rule)."""
    array = np.asarray(samples, dtype=np.float32)
    if array.size == 0:
        return 0, 0
    padded = np.pad(array, frame_length // 2, mode="constant")
    n_frames = 1 + (padded.size - frame_length) // hop_length
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length][:n_frames]
    power = np.mean(frames.astype(np.float64) ** 2, axis=1)
    amin = 1e-10
    db = 10.0 * np.log10(np.maximum(power, amin)) - 10.0 * np.log10(max(float(power.max()), amin))
    loud = np.flatnonzero(db > -top_db)
    if loud.size == 0:
        return 0, 0
    return int(loud[0] * hop_length), int(min(array.size, (loud[-1] + 1) * hop_length))


def trim_silence(
    samples: np.ndarray,
    sample_rate: int,
    keep_left: float = 0.05,
    keep_right: float = 0.22,
    hop_size: int = 240,
    top_db: float = 20.0,
) -> np.ndarray:
    """The reference prompt trim: speech bounds, `keep_left` s of lead-in, length rounded to hops + margins."""
    array = np.asarray(samples, dtype=np.float32)
    start, end = nonsilent_bounds(array, top_db=top_db)
    n_hops = math.ceil((end - start) / hop_size)
    left = int(keep_left * sample_rate)
    first = start - left
    trimmed = array[first:] if first > 0 else np.pad(array, (-first, 0))
    out_len = int(n_hops * hop_size + (keep_left + keep_right) * sample_rate)
    if out_len < trimmed.size:
        return trimmed[:out_len].astype(np.float32)
    return np.pad(trimmed, (0, out_len - trimmed.size)).astype(np.float32)
