from __future__ import annotations

from stepaudio.text.scripts import east_asian_language


def test_kana_wins_over_han_then_hangul_then_han() -> None:
    assert east_asian_language("東京へ行きます") == "ja"  # kanji with kana
    assert east_asian_language("안녕하세요") == "ko"
    assert east_asian_language("今天天气真好") == "zh"
    assert east_asian_language("Hello, world.") is None
    assert east_asian_language("") is None
