"""Speaking rate without a pitch change: WSOLA time stretching, whose output length is the input's / speed.

The voices' own rate controls are not proportional (Piper's VITS `length_scale` at 1/4 gave speech only 2.05x
shorter, espeak clamps its words per minute to 80..450), so speed factors are applied here, after synthesis,
where 4x is a quarter of the duration and 0.25x four times it.
"""

from __future__ import annotations

import numpy as np

from stepaudio.errors import AudioError, MissingExtraError

MIN_SPEED = 0.25
MAX_SPEED = 4.0


def time_stretch(samples: np.ndarray, speed: float) -> np.ndarray:
    """`samples` spoken `speed` times as fast (float32, same rate and pitch, length `round(n / speed)`)."""
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise AudioError(f"speed factor {speed:g} is outside {MIN_SPEED:g}..{MAX_SPEED:g}")
    data = np.asarray(samples, dtype=np.float32).reshape(-1)
    if speed == 1.0 or data.size == 0:
        return data
    try:
        import pytsmod
    except ImportError as exc:
        raise MissingExtraError("lite", "pytsmod") from exc
    out = np.asarray(pytsmod.wsola(data, 1.0 / speed), dtype=np.float32)
    return np.clip(out, -1.0, 1.0)


def speed_and_volume(samples: np.ndarray, speed: float, volume: float | None) -> np.ndarray:
    """The Step engines' after-synthesis controls: WSOLA to `speed` (pieces of 2048 samples or fewer are left as
    they are: too short to stretch), then gain `volume`, clipped to [-1, 1]; float32."""
    out = np.asarray(samples, dtype=np.float32)
    if speed != 1.0 and out.size > 2048:
        import pytsmod

        out = np.asarray(pytsmod.wsola(out, 1.0 / speed), dtype=np.float32)
    if volume is not None and volume != 1.0:
        out = np.clip(out * float(volume), -1.0, 1.0)
    return out
