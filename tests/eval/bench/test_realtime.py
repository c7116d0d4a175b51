"""The speculative-response simulation: exact on its scenario, so its numbers can be checked by hand."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from stepaudio.eval.bench import realtime
from stepaudio.eval.bench.realtime import Scenario, recorded_turns, replay, silero_scores, simulate
from stepaudio.realtime.turns import TurnDetectionConfig

# the expectations below are worked out for a tentative end 200 ms into the silence
AT_200 = TurnDetectionConfig(speculative_silence_ms=200)


def test_no_pauses_commits_every_speculation_and_saves_the_window() -> None:
    result = simulate(Scenario(conversations=2, turns=3, pauses_per_turn=0.0, first_audio_ms=600, detection=AT_200))
    assert result["speculative_started"] == result["speculative_committed"] == 6
    assert result["commit_rate"] == 1.0
    assert result["mean_window_ms"] == pytest.approx(300, abs=1)  # 500 ms confirmed - 200 ms tentative
    assert result["mean_saved_ms"] == pytest.approx(300, abs=1)
    assert result["latency_mean_ms"] == pytest.approx(200 + 600, abs=21)
    assert result["discarded_generation_s_per_turn"] == 0.0


def test_fast_generation_saves_only_its_own_time() -> None:
    result = simulate(Scenario(conversations=1, turns=2, pauses_per_turn=0.0, first_audio_ms=100, detection=AT_200))
    assert result["mean_saved_ms"] == pytest.approx(100, abs=1)
    assert result["latency_mean_ms"] == pytest.approx(500, abs=21)  # audio waits for the confirmation


def test_pauses_between_the_tentative_and_confirmed_silence_are_discarded() -> None:
    result = simulate(Scenario(conversations=2, turns=2, pauses_per_turn=3.0, pause_ms=(300, 301), detection=AT_200))
    turns = result["turns"]
    assert result["speculative_committed"] == turns
    assert result["speculative_started"] > turns
    assert result["commit_rate"] == pytest.approx(turns / result["speculative_started"])
    assert result["discarded_generation_s_per_turn"] > 0


def test_short_pauses_start_nothing_and_baseline_never_speculates() -> None:
    short = simulate(Scenario(conversations=1, turns=3, pauses_per_turn=3.0, pause_ms=(60, 140), detection=AT_200))
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


def _turn(*pieces: tuple[int, float]) -> np.ndarray:
    """VAD scores of 32 ms frames: (frames, probability) pieces."""
    return np.concatenate([np.full(frames, prob) for frames, prob in pieces])


def test_replay_counts_a_pause_between_the_tentative_and_confirmed_silence() -> None:
    pause = _turn((20, 0.9), (10, 0.05), (20, 0.9))  # 320 ms: speculation started, then speech again
    short = _turn((20, 0.9), (3, 0.05), (20, 0.9))  # 96 ms: under the tentative silence
    result = replay([pause, short], Scenario())
    assert result["turns"] == 2 and result["speculative_committed"] == 2
    assert result["speculative_started"] == 3 and result["commit_rate"] == pytest.approx(2 / 3)
    baseline = replay([pause, short], Scenario(detection=TurnDetectionConfig(speculative_silence_ms=None)))
    assert baseline["speculative_started"] == 0 and baseline["latency_mean_ms"] > result["latency_mean_ms"]


def test_recorded_turns_are_measured_with_their_natural_pauses() -> None:
    turns = recorded_turns()
    if not turns:
        pytest.skip("real recordings absent: apt-get install pocketsphinx-testdata")
    pytest.importorskip("faster_whisper")
    assert len(turns) >= 10 and all(turn.dtype == np.float32 and turn.size > 16000 for turn in turns)
    result = replay(silero_scores(turns), Scenario())
    assert result["turns"] == len(turns) and result["speculative_committed"] == len(turns)
    # some speakers pause mid-sentence for longer than the 200 ms tentative silence: not every speculation holds
    assert result["speculative_started"] > len(turns) and 0.5 < result["commit_rate"] < 1.0


def test_without_recordings_the_report_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    realtime.add_arguments(parser)
    out = tmp_path / "rt.json"
    args = parser.parse_args(["--conversations", "1", "--turns", "1", "--recordings", str(tmp_path),
                              "--json", str(out)])
    assert realtime.run(args) == 0
    assert "pocketsphinx-testdata" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["recorded"] is None and data["latency_saved_source"] == "simulated"
