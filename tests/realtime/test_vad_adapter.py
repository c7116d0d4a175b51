"""WindowedVad: the window slides, the last score is returned, frames are checked."""

from __future__ import annotations

import numpy as np
import pytest

from stepaudio.errors import AudioError
from stepaudio.realtime.vad_adapter import WindowedVad


def test_scores_a_sliding_window_and_returns_the_last_chunk() -> None:
    seen: list[int] = []

    def score(samples: np.ndarray) -> np.ndarray:
        seen.append(samples.size)
        return samples.reshape(-1, 4).mean(axis=1)  # one score per 4-sample chunk

    vad = WindowedVad(score, frame_samples=4, window=3)
    values = [vad(np.full(4, value, np.float32)) for value in (0.1, 0.2, 0.3, 0.4)]
    assert values == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert seen == [4, 8, 12, 12]
    vad.reset()
    vad(np.zeros(4, np.float32))
    assert seen[-1] == 4
    with pytest.raises(AudioError, match="4 samples"):
        vad(np.zeros(5, np.float32))


@pytest.mark.slow
def test_silero_from_faster_whisper_separates_tone_bursts_from_silence() -> None:
    vad_module = pytest.importorskip("faster_whisper.vad")
    vad = WindowedVad(vad_module.get_vad_model())
    rng = np.random.default_rng(0)
    quiet = [vad(rng.normal(0, 1e-4, 512).astype(np.float32)) for _ in range(20)]
    assert max(quiet) < 0.5
