"""The speculative-response simulation: exact on its scenario, so its numbers can be checked by hand."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from stepaudio.eval.bench import realtime
from stepaudio.eval.bench.realtime import Scenario, simulate
from stepaudio.realtime.turns import TurnDetectionConfig


def test_no_pauses_commits_every_speculation_and_saves_the_window() -> None:
    result = simulate(Scenario(conversations=2, turns=3, pauses_per_turn=0.0, first_audio_ms=600))
    assert result["speculative_started"] == result["speculative_committed"] == 6
    assert result["commit_rate"] == 1.0
    assert result["mean_window_ms"] == pytest.approx(300, abs=1)  # 500 ms confirmed - 200 ms tentative
    assert result["mean_saved_ms"] == pytest.approx(300, abs=1)
    assert result["latency_mean_ms"] == pytest.approx(200 + 600, abs=21)
    assert result["discarded_generation_s_per_turn"] == 0.0


def test_fast_generation_saves_only_its_own_time() -> None:
    result = simulate(Scenario(conversations=1, turns=2, pauses_per_turn=0.0, first_audio_ms=100))
    assert result["mean_saved_ms"] == pytest.approx(100, abs=1)
    assert result["latency_mean_ms"] == pytest.approx(500, abs=21)  # audio waits for the confirmation


def test_pauses_between_the_tentative_and_confirmed_silence_are_discarded() -> None:
    result = simulate(Scenario(conversations=2, turns=2, pauses_per_turn=3.0, pause_ms=(300, 301)))
    turns = result["turns"]
    assert result["speculative_committed"] == turns
    assert result["speculative_started"] > turns
    assert result["commit_rate"] == pytest.approx(turns / result["speculative_started"])
    assert result["discarded_generation_s_per_turn"] > 0


def test_short_pauses_start_nothing_and_baseline_never_speculates() -> None:
    short = simulate(Scenario(conversations=1, turns=3, pauses_per_turn=3.0, pause_ms=(60, 140)))
    assert short["commit_rate"] == 1.0
    baseline = simulate(Scenario(conversations=1, turns=3, detection=TurnDetectionConfig(speculative_silence_ms=None)))
    assert baseline["speculative_started"] == 0
    assert baseline["latency_mean_ms"] == pytest.approx(500 + 600, abs=21)


def test_cli_entry_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    realtime.add_arguments(parser)
    out = tmp_path / "rt.json"
    assert realtime.run(parser.parse_args(["--conversations", "2", "--turns", "2", "--json", str(out)])) == 0
    assert "commit rate" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"speculative", "baseline"}
