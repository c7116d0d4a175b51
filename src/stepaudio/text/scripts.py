"""Which East Asian script a text is written in: the one rule recognition (the language Whisper wrote) and speech
(the voice that reads a sentence) share. Kana wins over Han, so Japanese with kanji is Japanese."""

from __future__ import annotations

import re
from typing import Literal

KANA = re.compile(r"[\u3040-\u30ff]")
HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def east_asian_language(text: str) -> Literal["ja", "ko", "zh"] | None:
    """'ja' with any kana, else 'ko' with any Hangul, else 'zh' with any Han character; None otherwise."""
    if KANA.search(text):
        return "ja"
    if HANGUL.search(text):
        return "ko"
    if HAN.search(text):
        return "zh"
    return None
