"""Latency requests against the project's server on loopback with the lite engine (Piper, SmolLM2): a realtime
turn, failures as counted errors, the level summary (the whole sweep and its report: tests/cli/test_eval_latency.py)."""

from __future__ import annotations

import socket

import pytest

from stepaudio.eval.latency import Client, LatencyConfig, LatencyError, Sample, run_sweep, summarize_level


def test_realtime_turn(lite_server_url: str) -> None:
    client = Client(LatencyConfig(lite_server_url))
    sample = client.request("realtime", 1)
    assert sample.error is None and sample.first_audio_s is not None
    assert 0 < sample.first_audio_s <= sample.total_s and sample.audio_s > 0.3 and sample.rtf is not None


def test_failed_requests_are_counted_not_raised(lite_server_url: str) -> None:
    config = LatencyConfig(lite_server_url, modes=("speech",), concurrency=(1,), requests=2, voice="no-such-voice",
                           warmup=False)
    samples, levels = run_sweep(config)
    assert levels[0].errors == 2 and levels[0].rtf_p50 is None and levels[0].throughput == 0.0
    assert all("HTTP 4" in (s.error or "") for s in samples)
    with pytest.raises(LatencyError, match="warm-up speech request failed"):
        run_sweep(LatencyConfig(lite_server_url, modes=("speech",), concurrency=(1,), voice="no-such-voice"))


def test_unreachable_or_bad_urls() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(LatencyError, match="cannot reach the server"):
        run_sweep(LatencyConfig(f"http://127.0.0.1:{port}", timeout_s=5))
    with pytest.raises(LatencyError, match="http"):
        Client(LatencyConfig("ftp://example"))


def test_level_summary_maths() -> None:
    samples = [Sample("speech", 2, 1.0, 0.2, 4.0), Sample("speech", 2, 2.0, 0.4, 4.0),
               Sample("speech", 2, 0.5, error="boom")]
    level = summarize_level("speech", 2, samples, wall_s=2.0)
    assert (level.requests, level.errors) == (3, 1)
    assert level.first_audio_p50_s == 0.2 and level.first_audio_p90_s == 0.4  # nearest rank
    assert level.rtf_p50 == 0.25 and level.rtf_p90 == 0.5
    assert level.throughput == 4.0 and level.requests_per_s == 1.0  # 8 audio s in 2 wall s
