"""PNG plots: real files with the expected size, data-dependent pixels, clear errors on nothing to plot."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from stepaudio.errors import StepAudioError

pytest.importorskip("matplotlib", reason="plots need the eval extra (matplotlib)")
from stepaudio.eval.plots import latency_distributions, rtf_vs_concurrency


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_latency_distribution_png(tmp_path: Path) -> None:
    groups = {"speech c=1": [0.16, 0.17, 0.18], "speech c=2": [0.2, 0.5], "chat c=1": [0.6], "empty": []}
    path = latency_distributions(groups, tmp_path / "sub" / "lat.png")
    width, height = _png_size(path)
    assert width >= 600 and height == 450
    other = latency_distributions({**groups, "speech c=1": [1.6, 1.7, 1.8]}, tmp_path / "other.png")
    assert other.read_bytes() != path.read_bytes()  # the pixels follow the data
    with pytest.raises(StepAudioError, match="no latency samples"):
        latency_distributions({"a": []}, tmp_path / "none.png")


def test_rtf_vs_concurrency_png(tmp_path: Path) -> None:
    rows = [{"mode": m, "concurrency": c, "rtf_p50": r, "throughput": t}
            for m, c, r, t in [("speech", 1, 0.1, 9.9), ("speech", 2, 0.12, 15.0), ("speech", 4, 0.3, 13.0),
                               ("chat", 1, 0.2, 4.6), ("chat", 2, None, None)]]
    path = rtf_vs_concurrency(rows, tmp_path / "rtf.png")
    assert _png_size(path) == (1000, 420)
    with pytest.raises(StepAudioError, match="no concurrency levels"):
        rtf_vs_concurrency([], tmp_path / "none.png")


def _asr_payload(rates: list[tuple[str, int, int]], name: str = "librivox") -> dict:
    from stepaudio.eval.asr import AsrResult, AsrRow, asr_report, summarize_rows
    from stepaudio.eval.report import provenance, to_jsonable

    rows = [AsrRow(f"utt{n}", "a.wav", None, unit, "n", "r", "h", "r", "h", errors, 0, 0, 10, errors / 10, 1.0, 0.1)
            for n, (unit, errors, _) in enumerate(rates)]
    result = AsrResult(name, "sphinx", False, tuple(rows), summarize_rows(rows), 1.0, 0.1)
    return to_jsonable(asr_report(result, provenance(command=["t"])))


def test_asr_error_rates_png_has_a_panel_per_metric(tmp_path: Path) -> None:
    from stepaudio.eval.plots import asr_error_rates

    one = asr_error_rates(_asr_payload([("word", 1, 0), ("word", 3, 0), ("word", 25, 0)]), tmp_path / "a.png")
    width, height = _png_size(one)
    assert 600 <= width <= 1400 and height == 440
    other = asr_error_rates(_asr_payload([("word", 2, 0), ("word", 3, 0), ("word", 25, 0)]), tmp_path / "b.png")
    assert other.read_bytes() != one.read_bytes()  # the bars follow the rows
    mixed = asr_error_rates(_asr_payload([("word", 1, 0), ("char", 2, 0)], "aishell"), tmp_path / "c.png")
    assert _png_size(mixed)[1] == 880  # WER and CER: two panels
    many = asr_error_rates(_asr_payload([("word", n % 7, 0) for n in range(300)]), tmp_path / "d.png")
    assert _png_size(many)[0] == 1400  # width stops growing; 300 bars drawn as a sorted distribution
    with pytest.raises(StepAudioError, match="no rows"):
        asr_error_rates({"rows": []}, tmp_path / "none.png")


def test_asr_figure_draws_the_papers_number_where_the_report_has_one(tmp_path: Path) -> None:
    from stepaudio.eval.plots import asr_error_rates

    rates = [("word", 1, 0), ("word", 2, 0)]
    with_paper = asr_error_rates(_asr_payload(rates, "librivox"), tmp_path / "paper.png")
    without = asr_error_rates(_asr_payload(rates, "mine"), tmp_path / "none.png")
    assert _png_size(with_paper) == _png_size(without) and with_paper.read_bytes() != without.read_bytes()


def test_tts_scores_png_with_and_without_speaker_similarity(tmp_path: Path) -> None:
    from stepaudio.eval.plots import tts_scores

    rows = [{"id": f"case{n}", "error_rate": n / 10, "similarity": 0.5 + n / 20} for n in range(4)]
    payload = {"testset": {"name": "seed-en", "language": "en"}, "metric": "WER", "rate": 0.15,
               "similarity": 0.575, "voice_mode": "clone", "asr_model": "whisper-base", "rows": rows}
    both = tts_scores(payload, tmp_path / "both.png")
    assert _png_size(both)[1] == 840
    no_ss = tts_scores({**payload, "similarity": None, "rows": [{**r, "similarity": None} for r in rows]},
                       tmp_path / "rate.png")
    assert _png_size(no_ss)[1] == 440
    with pytest.raises(StepAudioError, match="no rows"):
        tts_scores({**payload, "rows": []}, tmp_path / "none.png")
