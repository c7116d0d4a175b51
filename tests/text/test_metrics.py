from __future__ import annotations

import pytest

from stepaudio.text.metrics import (
    ErrorCounts,
    corpus_rate,
    edit_counts,
    language_unit,
    normalize_chinese,
    normalize_english,
    score,
)


def test_english_normaliser_rules() -> None:
    assert normalize_english("Hello, World!  It's 2 o'clock & 'fine'.") == "hello world it's two o'clock and fine"
    assert normalize_english("well-known") == "well known"


def test_chinese_normaliser_rules() -> None:
    assert normalize_chinese("這是「繁體」中文，共 3 個字！") == "这是繁体中文共三个字"
    assert normalize_chinese("ＡＢＣ，你好") == "abc你好"


def test_edit_counts() -> None:
    assert edit_counts(["a", "b", "c"], ["a", "x", "c", "d"]) == ErrorCounts(1, 0, 1, 3)
    assert edit_counts([], ["a"]) == ErrorCounts(0, 0, 1, 0)
    assert edit_counts(["a", "b"], []) == ErrorCounts(0, 2, 0, 2)
    assert ErrorCounts(0, 0, 1, 0).rate == 1.0 and ErrorCounts(0, 0, 0, 0).rate == 0.0


def test_wer_and_cer_scores() -> None:
    english = score("The cat sat on the mat.", "the cat sat on a mat", unit="word")
    assert english.counts == ErrorCounts(1, 0, 0, 6)
    chinese = score("今天天气真好。", "今天天氣很好", unit="char")
    assert chinese.counts == ErrorCounts(1, 0, 0, 6)
    assert corpus_rate([english, chinese]) == pytest.approx(2 / 12)
    with pytest.raises(ValueError, match="unknown normalizer"):
        score("a", "b", normalizer="klingon")


def test_language_unit() -> None:
    assert language_unit("zh") == "char" and language_unit("en") == "word"
    assert language_unit(None, "你好") == "char" and language_unit(None, "hello") == "word"
    assert language_unit("ja") == "char" and language_unit(None, "すみません") == "char"  # Japanese: CER
