"""Speculation metrics."""

from __future__ import annotations

import pytest

from stepaudio.realtime.speculative import Speculation, SpeculationMetrics, saved_ms


def test_commit_rate_counts_decided_speculations() -> None:
    metrics = SpeculationMetrics().on_start().on_start().on_start().on_discard().on_discard().on_commit(300)
    assert metrics.commit_rate == pytest.approx(1 / 3)
    assert metrics.mean_window_ms == 300
    assert SpeculationMetrics().commit_rate == 0.0
    assert metrics.as_dict()["speculative_started"] == 3


def test_saved_is_the_smaller_of_generation_time_and_window() -> None:
    assert saved_ms(Speculation("r", 1.0)) is None
    assert saved_ms(Speculation("r", 1.0, committed_at=1.3)) is None
    assert saved_ms(Speculation("r", 1.0, committed_at=1.3, first_audio_at=1.1)) == pytest.approx(100)
    assert saved_ms(Speculation("r", 1.0, committed_at=1.3, first_audio_at=2.0)) == pytest.approx(300)
