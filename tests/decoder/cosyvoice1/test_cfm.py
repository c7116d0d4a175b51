"""Euler sampler: reference time arithmetic, guidance combination, deterministic noise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stepaudio.decoder.cosyvoice1.cfm import euler_times, solve_euler, time_span
from stepaudio.decoder.cosyvoice1.estimator import ConditionalDecoder
from stepaudio.decoder.cosyvoice1.flow_config import CFMConfig, EstimatorConfig


def test_cosine_schedule_and_accumulated_times() -> None:
    span = time_span(10, "cosine", torch.float32, torch.device("cpu"))
    assert span[0] == 0 and span[-1] == pytest.approx(1.0)
    assert span[1] < 0.1 - span[0]  # cosine: small first step
    times = euler_times(span)
    assert len(times) == 10
    total = sum(float(dt) for _, dt in times)
    assert total == pytest.approx(1.0, abs=1e-6)


def test_guidance_combines_conditional_and_unconditional() -> None:
    torch.manual_seed(0)
    est = ConditionalDecoder(EstimatorConfig(channels=(8, 8), attention_head_dim=4, n_blocks=1,
                                             num_mid_blocks=1, num_heads=2)).eval()
    noise, mu, spks, cond = torch.randn(1, 80, 9), torch.randn(1, 80, 9), torch.randn(1, 80), torch.randn(1, 80, 9)
    one_step = CFMConfig(n_timesteps=1, t_scheduler="linear", inference_cfg_rate=0.7)
    with torch.inference_mode():
        out = solve_euler(est, noise, mu, None, spks, cond, one_step)
        t0 = torch.zeros(1)
        v_c = est(noise, None, mu, t0, spks, cond)
        v_u = est(noise, None, torch.zeros_like(mu), t0, torch.zeros_like(spks), torch.zeros_like(cond))
        plain = solve_euler(est, noise, mu, None, spks, cond, CFMConfig(n_timesteps=1, t_scheduler="linear",
                                                                          inference_cfg_rate=0.0))
    torch.testing.assert_close(out, noise + 1.7 * v_c - 0.7 * v_u, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(plain, noise + v_c, atol=1e-5, rtol=1e-5)


@pytest.mark.conformance
def test_conformance_step_times(conformance_dir: Path) -> None:
    meta = json.loads((conformance_dir / "flow" / "meta.json").read_text())
    times = euler_times(time_span(meta["n_timesteps"], "cosine", torch.float32, torch.device("cpu")))
    assert [float(t) for t, _ in times] == meta["t_values_per_step"]


def test_parallel_guidance_equals_batched_pair() -> None:
    torch.manual_seed(1)
    est = ConditionalDecoder(EstimatorConfig(channels=(16, 16), attention_head_dim=4, n_blocks=1,
                                             num_mid_blocks=1, num_heads=2)).eval()
    noise, mu, cond = torch.randn(2, 80, 11), torch.randn(2, 80, 11), torch.randn(2, 80, 11)
    spks = torch.randn(2, 80)
    mask = torch.ones(2, 1, 11)
    mask[1, :, 7:] = 0  # a padded item: each half keeps its mask
    config = CFMConfig(n_timesteps=3)
    threads = torch.get_num_threads()
    with torch.inference_mode():
        for m in (None, mask):
            batched = solve_euler(est, noise, mu, m, spks, cond, config, parallel_guidance=False)
            parallel = solve_euler(est, noise, mu, m, spks, cond, config, parallel_guidance=True)
            torch.testing.assert_close(parallel, batched, atol=1e-5, rtol=1e-5)
    assert torch.get_num_threads() == threads  # the caller's thread count is left as it was
    with torch.no_grad():  # outside inference mode the halves follow the caller's grad mode
        out = solve_euler(est, noise, mu, None, spks, cond, config, parallel_guidance=True)
    assert not out.requires_grad and not out.is_inference()


def test_estimator_setting_picks_the_guidance_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    from stepaudio.decoder.cosyvoice1 import cfm

    est = ConditionalDecoder(EstimatorConfig(channels=(8, 8), attention_head_dim=4, n_blocks=1,
                                             num_mid_blocks=1, num_heads=2)).eval()
    calls: list[int] = []
    parallel = cfm._parallel_pair
    monkeypatch.setattr(cfm, "_parallel_pair", lambda *a: calls.append(1) or parallel(*a))
    noise = torch.randn(1, 80, 5)
    config = CFMConfig(n_timesteps=1)
    with torch.inference_mode():
        for setting, expected in ((True, 1), (False, 0)):
            est.parallel_guidance = setting
            calls.clear()
            solve_euler(est, noise, noise, None, torch.randn(1, 80), noise, config)
            assert len(calls) == expected
        calls.clear()  # an explicit argument wins over the estimator's setting
        solve_euler(est, noise, noise, None, torch.randn(1, 80), noise, config, parallel_guidance=True)
        assert len(calls) == 1
