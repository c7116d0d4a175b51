from __future__ import annotations

import numpy as np

from stepaudio.eval.bench import lite_turns


def test_leading_silence_is_measured_at_minus_40_dbfs() -> None:
    samples = np.concatenate([np.full(2400, 0.005, dtype=np.float32), np.full(100, 0.5, dtype=np.float32)])
    assert lite_turns.leading_silence(samples, 24000) == 0.1
    assert lite_turns.leading_silence(np.zeros(480, dtype=np.float32), 24000) == 0.02


def test_greedy_decoding_is_seeded() -> None:
    options = lite_turns.greedy()
    assert options.temperature == 0.0 and options.seed == 0
