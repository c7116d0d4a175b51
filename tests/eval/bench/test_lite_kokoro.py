from __future__ import annotations

import pytest

from stepaudio.eval.bench import lite, lite_kokoro


def test_the_kokoro_comparison_reports_both_paths_with_their_load() -> None:
    results = {"load_average": (6.0, 3, 2), "load_average_end": (7.0, 2, 2), "peak_rss_mb": {}, "cpus": 2,
               "kokoro_graphs": {"zh_zh-yunjian": {
                   "language": "zh", "voice": "zh-yunjian", "identical_samples": True, "repeats": 3,
                   "prepared": {"cpu_rtf": 0.55, "rtf": 1.2, "cpu_rtf_runs": [0.5, 0.55, 0.6]},
                   "published": {"cpu_rtf": 0.64, "rtf": 1.4, "cpu_rtf_runs": [0.6, 0.64, 0.7]}}},
               "latency_compare": {"summary": {"first_audio_p50 en": 3.2, "first_audio_p50 zh": 3.9,
                                               "first_audio_p50 zh before": 4.6},
                                   "turns": {"en": 24, "zh": 18, "zh before": 18}, "rows": []}}
    rows = {(r["set"], r["metric"]): r for r in lite.headline(results)}
    new = rows[("TTS zh zh-yunjian", "CPU seconds per audio second, prepared graph")]
    old = rows[("TTS zh zh-yunjian", "CPU seconds per audio second, published graph")]
    assert (new["raw_value"], old["raw_value"]) == (0.55, 0.64) and "load average 6.0 at start" in new["note"]
    assert "samples identical: True" in new["note"] and "median of 3 passes" in old["note"]
    before = rows[("spoken turn, Mandarin before Kokoro's tuning", "speech end -> first reply audio p50 (s), repeated")]
    assert before["raw_value"] == 4.6 and "18 turns" in before["note"]
    printed = "\n".join(lite_kokoro.lines(results))
    assert "0.550 prepared graph, 0.640 published (14% less)" in printed and "samples identical: yes" in printed
    assert "first_audio_p50 zh before" in printed and "4.60 s (18 turns)" in printed
    results["kokoro_graphs"]["zh_zh-yunjian"].update(identical_samples=False, snr_db=21.34)  # the fused Snake op
    assert "samples identical: no (lowest SNR 21.3 dB)" in "\n".join(lite_kokoro.lines(results))
    assert "(lowest SNR 21.3 dB)" in rows_note(results)


def rows_note(results: dict[str, object]) -> str:
    return next(r["note"] for r in lite.headline(results) if r["metric"].endswith("prepared graph"))


def test_the_comparison_lines_reach_the_bench_table() -> None:
    results = {"load_average": (1.0, 1, 1), "load_average_end": (1.5, 1, 1), "peak_rss_mb": {}, "cpus": 2,
               "latency_compare": {"summary": {"first_audio_p50 zh": 3.9, "first_audio_p50 zh before": None},
                                   "turns": {"zh": 6, "zh before": 0}, "rows": []}}
    printed = "\n".join(lite._lines(results))
    assert "CMP  first_audio_p50 zh" in printed and "3.90 s (6 turns)" in printed
    assert "first_audio_p50 zh before  -" in printed
    assert [r["metric"] for r in lite.headline(results)] == ["speech end -> first reply audio p50 (s), repeated"]


def _event(cat: str, name: str, ts: int, dur: int, op: str | None = None) -> dict[str, object]:
    return {"cat": cat, "name": name, "ts": ts, "dur": dur, **({"args": {"op_name": op}} if op else {})}


def test_the_profile_sums_kernel_time_per_op_type_after_the_warm_up() -> None:
    events = [_event("Session", "model_run", 0, 100), _event("Node", "conv_kernel_time", 10, 90, "MatMulInteger"),
              _event("Session", "model_run", 200, 100),
              _event("Node", "a_kernel_time", 210, 30_000, "MatMulInteger"),
              _event("Node", "a_fence_before", 210, 5, "MatMulInteger"),
              _event("Node", "b_kernel_time", 240, 60_000, "Sin"),
              _event("Node", "c_kernel_time", 290, 20_000, "MatMulInteger")]
    assert lite_kokoro.op_seconds(events, skip_runs=1) == {"Sin": 0.06, "MatMulInteger": 0.05}
    assert list(lite_kokoro.op_seconds(events, skip_runs=1)) == ["Sin", "MatMulInteger"]
    assert lite_kokoro.op_seconds(events)["MatMulInteger"] == pytest.approx(0.00009 + 0.05)


def test_the_profile_line_gives_each_op_types_share() -> None:
    results = {"kokoro_profile": {"zh_zh-yunjian": {"language": "zh", "voice": "zh-yunjian", "audio_seconds": 2.0,
                                                    "cpu_seconds": 1.3, "ops": {"MatMulInteger": 0.6, "Sin": 0.4}}}}
    (line,) = lite_kokoro.lines(results)
    assert "0.500 s of kernel wall time per audio s" in line and "process CPU 0.650" in line
    assert "MatMulInteger 60.0%, Sin 40.0%" in line
