from __future__ import annotations

import argparse

import pytest

from stepaudio.eval.bench import lite, lite_turns


def test_titles_are_spelled_out_before_scoring() -> None:
    assert lite.expand_titles("Mr. Smith met Mrs. Brown and Dr. Who") == "Mister Smith met Missus Brown and Doctor Who"


def test_error_rates_use_the_project_normalisers() -> None:
    pytest.importorskip("jiwer", reason="scoring needs the eval extra")
    pytest.importorskip("opencc", reason="scoring needs the eval extra")
    assert lite.error_rate([("and mister john dashwood", "And Mr. John Dashwood.")]) == 0.0
    assert lite.error_rate([("a b c d", "a x c")]) == 0.5
    assert lite.error_rate([("今天天气很好", "今天天氣很好。")], "char") == 0.0


def test_arguments_have_sensible_defaults() -> None:
    parser = argparse.ArgumentParser()
    lite.add_arguments(parser)
    args = parser.parse_args([])
    assert args.only == "asr,tts,latency" and args.chat_model == "qwen" and args.questions == len(lite_turns.QUESTIONS)
    assert ("zh", "zh-yunjian") in lite.parse_voices(args.voices) and args.tts_threads == "1,2"
    with pytest.raises(SystemExit, match="language:voice"):
        lite.parse_voices("ko:ko")


def test_headline_rows_carry_the_load_and_the_peak_memory() -> None:
    results = {"load_average": (3.5, 3, 2), "load_average_end": (2.0, 2, 2),
               "peak_rss_mb": {"spoken turns (the engine)": 900.0, "after tts": 2000.0},
               "asr": {"questions_zh": {"constrained": {"cer": 0.02, "understood": 6, "questions": 6,
                                                        "seconds_p50": 1.8}}},
               "tts": {"zh_zh-yunjian": {"language": "zh", "voice": "zh-yunjian", "cer": 0.01,
                                         "threads_1": {"rtf": 0.6, "cpu_rtf": 0.55, "first_audio_p50": 0.9}}},
               "latency": {"summary": {"first_audio_p50": 3.1, "first_audio_p50_zh": 4.2}}}
    rows = {(r["set"], r["metric"]): r for r in lite.headline(results)}
    assert rows[("TTS zh zh-yunjian", "round-trip CER (bench sentences)")]["value"] == "1.00%"
    rtf = rows[("TTS zh zh-yunjian", "RTF, 1 thread(s)")]
    assert "load average 3.5 at start" in rtf["note"] and "CPU seconds per audio second 0.550" in rtf["note"]
    assert rows[("spoken turn, Mandarin", "speech end -> first reply audio p50 (s)")]["raw_value"] == 4.2
    assert rows[("lite engine process", "peak RSS after the spoken turns (MB)")]["raw_value"] == 900.0
    assert "6/6 understood" in rows[("questions-zh (synthetic)", "ASR CER, language detected (constrained)")]["note"]
