"""Per-frame speech probabilities from a VAD that scores whole arrays.

The session asks for one probability per frame. Some VAD models score an array chunk by chunk but reset
their state on every call (faster-whisper's Silero ONNX does); called on a lone frame they see no context.
`WindowedVad` scores a sliding window of the latest frames and keeps the last score.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

from stepaudio.errors import AudioError


class WindowedVad:
    def __init__(self, score: Callable[[np.ndarray], np.ndarray], frame_samples: int = 512, window: int = 8) -> None:
        if frame_samples <= 0 or window <= 0:
            raise ValueError("frame_samples and window must be positive")
        self.score = score
        self.frame_samples = frame_samples
        self._frames: deque[np.ndarray] = deque(maxlen=window)

    def __call__(self, frame: np.ndarray) -> float:
        samples = np.asarray(frame, dtype=np.float32).reshape(-1)
        if samples.size != self.frame_samples:
            raise AudioError(f"the VAD expects frames of {self.frame_samples} samples, got {samples.size}")
        self._frames.append(samples)
        scores = np.asarray(self.score(np.concatenate(self._frames)), dtype=np.float64).reshape(-1)
        return float(scores[-1]) if scores.size else 0.0

    def reset(self) -> None:
        self._frames.clear()
