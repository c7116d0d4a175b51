from __future__ import annotations

import argparse

import pytest

from stepaudio.eval.bench import lite


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
    assert args.only == "asr,tts,latency" and args.chat_model == "qwen" and args.questions == len(lite.QUESTIONS)
    assert "cmn+f3" in args.zh_voices
