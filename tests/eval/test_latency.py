"""Latency sweep against the project's server on loopback with the lite engine (Piper, SmolLM2): speech, chat
and realtime at two concurrency levels, the report files, and failures as counted errors."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from stepaudio.errors import StepAudioError
from stepaudio.eval.latency import Client, LatencyConfig, LatencyError, Sample, run_sweep, summarize_level


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("uvicorn")
    pytest.importorskip("websockets")
    from stepaudio.engines.registry import create_engine
    from stepaudio.eval.bench.server_load import InProcessServer

    try:
        engine = create_engine("lite", chat_model="smollm2", max_new_tokens=24)
        for part in (engine.chat, engine.synthesizer):
            part.warmup()  # type: ignore[union-attr]
    except (StepAudioError, ImportError) as exc:
        pytest.skip(f"the lite engine is not usable here: {exc}")
    with InProcessServer(engine, Path(tmp_path_factory.mktemp("store")), 8) as ws_url:
        yield ws_url.replace("ws://", "http://").removesuffix("/v1/realtime")


def _sweep(server_url: str, out: Path, modes: str) -> dict:
    from stepaudio.cli.main import main

    code = main(["eval", "latency", "--url", server_url, "--modes", modes, "--concurrency", "1,2", "--requests", "2",
                 "--text", "Good morning. The park is open.", "--max-tokens", "16", "--out", str(out)])
    assert code == 0
    return json.loads((out / "latency.json").read_text())


def test_cli_sweep_writes_report_and_plots(server_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    payload = _sweep(server_url, out, "speech,chat")
    levels = {(lv["mode"], lv["concurrency"]): lv for lv in payload["levels"]}
    assert set(levels) == {(m, c) for m in ("speech", "chat") for c in (1, 2)}
    assert all(lv["errors"] == 0 and lv["requests"] == 2 for lv in levels.values())
    for sample in payload["samples"]:
        assert sample["error"] is None and 0 < sample["first_audio_s"] <= sample["total_s"]
        assert sample["audio_s"] > 0.3
    speech = [s for s in payload["samples"] if s["mode"] == "speech"]
    assert all(1.0 < s["audio_s"] < 6.0 for s in speech)  # two short sentences of Piper speech
    assert levels[("speech", 1)]["rtf_p50"] < 1.0  # Piper is faster than real time here
    assert payload["provenance"]["sample_rate"] == 22050 and "api_key" not in payload["config"]
    assert {Path(p).name for p in payload["plots"]} == {"latency_distribution.png", "rtf_vs_concurrency.png"}
    assert all((out / Path(p).name).stat().st_size > 10_000 for p in payload["plots"])
    md = (out / "latency.md").read_text()
    assert "| speech | 1 | 2 | 0 |" in md and "![rtf_vs_concurrency.png]" in md


def test_realtime_turn(server_url: str) -> None:
    client = Client(LatencyConfig(server_url))
    sample = client.request("realtime", 1)
    assert sample.error is None and sample.first_audio_s is not None
    assert 0 < sample.first_audio_s <= sample.total_s and sample.audio_s > 0.3 and sample.rtf is not None


@pytest.mark.slow
def test_all_three_modes(server_url: str, tmp_path: Path) -> None:
    payload = _sweep(server_url, tmp_path / "out", "speech,chat,realtime")
    assert {(lv["mode"], lv["concurrency"]) for lv in payload["levels"]} == {
        (m, c) for m in ("speech", "chat", "realtime") for c in (1, 2)}
    assert all(lv["errors"] == 0 for lv in payload["levels"])


def test_failed_requests_are_counted_not_raised(server_url: str) -> None:
    config = LatencyConfig(server_url, modes=("speech",), concurrency=(1,), requests=2, voice="no-such-voice",
                           warmup=False)
    samples, levels = run_sweep(config)
    assert levels[0].errors == 2 and levels[0].rtf_p50 is None and levels[0].throughput == 0.0
    assert all("HTTP 4" in (s.error or "") for s in samples)
    with pytest.raises(LatencyError, match="warm-up speech request failed"):
        run_sweep(LatencyConfig(server_url, modes=("speech",), concurrency=(1,), voice="no-such-voice"))


def test_unreachable_or_bad_urls(capsys: pytest.CaptureFixture[str]) -> None:
    from stepaudio.cli.main import main

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(LatencyError, match="cannot reach the server"):
        run_sweep(LatencyConfig(f"http://127.0.0.1:{port}", timeout_s=5))
    with pytest.raises(LatencyError, match="http"):
        Client(LatencyConfig("ftp://example"))
    assert main(["eval", "latency", "--url", f"http://127.0.0.1:{port}"]) == 2
    assert "cannot reach the server" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "latency", "--url", "http://x", "--concurrency", "0,2"])


def test_level_summary_maths() -> None:
    samples = [Sample("speech", 2, 1.0, 0.2, 4.0), Sample("speech", 2, 2.0, 0.4, 4.0),
               Sample("speech", 2, 0.5, error="boom")]
    level = summarize_level("speech", 2, samples, wall_s=2.0)
    assert (level.requests, level.errors) == (3, 1)
    assert level.first_audio_p50_s == 0.2 and level.first_audio_p90_s == 0.4  # nearest rank
    assert level.rtf_p50 == 0.25 and level.rtf_p90 == 0.5
    assert level.throughput == 4.0 and level.requests_per_s == 1.0  # 8 audio s in 2 wall s
