from __future__ import annotations

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


def test_the_comparison_lines_reach_the_bench_table() -> None:
    results = {"load_average": (1.0, 1, 1), "load_average_end": (1.5, 1, 1), "peak_rss_mb": {}, "cpus": 2,
               "latency_compare": {"summary": {"first_audio_p50 zh": 3.9, "first_audio_p50 zh before": None},
                                   "turns": {"zh": 6, "zh before": 0}, "rows": []}}
    printed = "\n".join(lite._lines(results))
    assert "CMP  first_audio_p50 zh" in printed and "3.90 s (6 turns)" in printed
    assert "first_audio_p50 zh before  -" in printed
    assert [r["metric"] for r in lite.headline(results)] == ["speech end -> first reply audio p50 (s), repeated"]
