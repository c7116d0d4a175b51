from __future__ import annotations

import numpy as np

from stepaudio.audio.trim import nonsilent_bounds, trim_silence


def speech_like(rate: int = 16000) -> tuple[np.ndarray, int, int]:
    silence = np.zeros(int(0.5 * rate), dtype=np.float32)
    t = np.arange(int(0.8 * rate)) / rate
    voiced = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return np.concatenate([silence, voiced, silence]), silence.size, silence.size + voiced.size


def test_bounds_find_the_loud_region_within_a_frame() -> None:
    audio, start, end = speech_like()
    lo, hi = nonsilent_bounds(audio)
    assert abs(lo - start) <= 512 and abs(hi - end) <= 512
    # as in librosa, digital silence has no louder frame to compare with, so nothing is trimmed
    assert nonsilent_bounds(np.zeros(1000, dtype=np.float32)) == (0, 1000)
    assert nonsilent_bounds(np.zeros(0, dtype=np.float32)) == (0, 0)


def test_trim_keeps_margins_and_hop_multiple() -> None:
    rate = 16000
    audio, _start, _end = speech_like(rate)
    out = trim_silence(audio, rate)
    lo, hi = nonsilent_bounds(audio)
    hops = -(-(hi - lo) // 240)
    assert out.size == hops * 240 + int(0.27 * rate)
    first_loud = int(np.flatnonzero(np.abs(out) > 0.01)[0])
    assert abs(first_loud - int(0.05 * rate)) <= 512


def test_trim_pads_when_speech_starts_immediately() -> None:
    rate = 16000
    t = np.arange(rate) / rate
    audio = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    out = trim_silence(audio, rate)
    assert np.all(out[: int(0.05 * rate)] == 0.0)
    assert out.size >= audio.size
