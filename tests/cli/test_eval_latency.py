"""`stepaudio eval latency` against the project's server on loopback with the lite engine (Piper, SmolLM2): a
sweep at two concurrency levels writes its JSON, Markdown and plots; bad input is a clear error."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from stepaudio.cli.main import main


def _sweep(lite_server_url: str, out: Path, modes: str) -> dict:
    code = main(["eval", "latency", "--url", lite_server_url, "--modes", modes, "--concurrency", "1,2",
                 "--requests", "2",
                 "--text", "Good morning. The park is open.", "--max-tokens", "16", "--out", str(out)])
    assert code == 0
    return json.loads((out / "latency.json").read_text())


def test_cli_sweep_writes_report_and_plots(lite_server_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    payload = _sweep(lite_server_url, out, "speech,chat")
    levels = {(lv["mode"], lv["concurrency"]): lv for lv in payload["levels"]}
    assert set(levels) == {(m, c) for m in ("speech", "chat") for c in (1, 2)}
    assert all(lv["errors"] == 0 and lv["requests"] == 2 for lv in levels.values())
    for sample in payload["samples"]:
        assert sample["error"] is None and 0 < sample["first_audio_s"] <= sample["total_s"]
        assert sample["audio_s"] > 0.3
    speech = [s for s in payload["samples"] if s["mode"] == "speech"]
    assert all(1.0 < s["audio_s"] < 6.0 for s in speech)  # two short sentences of Piper speech
    assert levels[("speech", 1)]["rtf_p50"] > 0  # (a speed, not asserted: the machine is shared)
    assert payload["provenance"]["sample_rate"] == 24000 and "api_key" not in payload["config"]  # raw PCM, as OpenAI
    assert {Path(p).name for p in payload["plots"]} == {"latency_distribution.png", "rtf_vs_concurrency.png"}
    assert all((out / Path(p).name).stat().st_size > 10_000 for p in payload["plots"])
    md = (out / "latency.md").read_text()
    assert "| speech | 1 | 2 | 0 |" in md and "![rtf_vs_concurrency.png]" in md


@pytest.mark.slow
def test_all_three_modes(lite_server_url: str, tmp_path: Path) -> None:
    payload = _sweep(lite_server_url, tmp_path / "out", "speech,chat,realtime")
    assert {(lv["mode"], lv["concurrency"]) for lv in payload["levels"]} == {
        (m, c) for m in ("speech", "chat", "realtime") for c in (1, 2)}
    assert all(lv["errors"] == 0 for lv in payload["levels"])

def test_unreachable_server_and_bad_levels_are_clear_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["eval", "latency", "--url", f"http://127.0.0.1:{port}"]) == 2
    assert "cannot reach the server" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "latency", "--url", "http://x", "--concurrency", "0,2"])
