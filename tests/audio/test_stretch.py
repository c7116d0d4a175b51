"""time_stretch: durations in exact proportion to the speed factor, pitch kept, the range enforced."""

from __future__ import annotations

import numpy as np
import pytest

from stepaudio.audio.stretch import speed_and_volume, time_stretch
from stepaudio.errors import AudioError

RATE = 22050


def _voiced(seconds: float) -> np.ndarray:
    """A 150 Hz buzz with syllable-like amplitude bursts (4 a second), so WSOLA has structure to follow."""
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    return (0.3 * envelope * np.sign(np.sin(2 * np.pi * 150 * t))).astype(np.float32)


def _pitch(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum[1:]) + 1) * RATE / samples.size


@pytest.mark.parametrize("speed", [0.25, 0.5, 2.0, 4.0])
def test_duration_is_in_proportion_and_pitch_is_kept(speed: float) -> None:
    samples = _voiced(3.0)
    out = time_stretch(samples, speed)
    assert out.dtype == np.float32
    assert len(out) / (len(samples) / speed) == pytest.approx(1.0, abs=0.01)
    assert _pitch(out) == pytest.approx(_pitch(samples), rel=0.03)


def test_identity_and_limits() -> None:
    samples = _voiced(0.5)
    assert np.array_equal(time_stretch(samples, 1.0), samples)
    assert time_stretch(np.zeros(0, np.float32), 2.0).size == 0
    for speed in (0.2, 4.5):
        with pytest.raises(AudioError, match=r"0\.25\.\.4"):
            time_stretch(samples, speed)


def test_speed_and_volume_stretches_long_pieces_and_scales_with_a_clip() -> None:
    samples = _voiced(1.0)
    assert np.array_equal(speed_and_volume(samples, 1.0, None), samples.astype(np.float32))
    assert abs(speed_and_volume(samples, 2.0, None).size - samples.size / 2) < 0.01 * samples.size
    short = samples[:2048]
    assert np.array_equal(speed_and_volume(short, 2.0, None), short)  # too short to stretch: as it came
    loud = speed_and_volume(np.array([0.4, -0.8], dtype=np.float32), 1.0, 2.0)
    assert loud.tolist() == pytest.approx([0.8, -1.0])
