from __future__ import annotations

import math

import pytest
import torch

from stepaudio.decoder.cosyvoice2.cfm import EstimatorCache, TensorNoise, euler_times, seeded_noise, time_schedule


def test_schedule_and_step_times_match_the_reference(offline: dict[str, torch.Tensor]) -> None:
    span = time_schedule(10)
    assert span[0] == 0 and span[-1] == pytest.approx(1.0)
    assert span[5] == pytest.approx(1 - math.cos(math.pi / 4))
    times = torch.cat([t for t, _ in euler_times(span)])
    torch.testing.assert_close(times, offline["estimator_all_steps.t"], atol=0, rtol=0)
    assert float(sum(dt for _, dt in euler_times(span))) == pytest.approx(1.0)


def test_tensor_noise_is_a_window_of_the_buffer() -> None:
    buffer = torch.randn(1, 4, 20)
    noise = TensorNoise(buffer)
    assert torch.equal(noise.columns(5, 9), buffer[0, :, 5:9])
    with pytest.raises(ValueError, match="outside"):
        noise.columns(15, 25)


def test_seeded_noise_depends_on_position_only() -> None:
    a, b = seeded_noise(3), seeded_noise(3)
    assert torch.equal(a.columns(100, 140)[:, 10:], b.columns(110, 140))
    assert not torch.equal(a.columns(0, 8), seeded_noise(4).columns(0, 8))


def test_trim_keeps_the_newest_first_frames_and_the_oldest_last_ones() -> None:
    frames = torch.arange(30, dtype=torch.float32)  # index 0 = newest (new-before-old order)
    att = frames.view(1, 1, 1, 1, 30, 1).expand(2, 3, 2, 1, 30, 4)
    cache = EstimatorCache(torch.zeros(2, 3, 2, 8, 2), att)
    assert cache.trimmed(4, 26) is cache
    kept = cache.trimmed(4, 10)
    assert kept.frames == 14
    assert kept.att[0, 0, 0, 0, :, 0].tolist() == [0, 1, 2, 3, *range(20, 30)]
