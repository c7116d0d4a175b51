"""Error rates with documented text normalisers: WER for space-delimited languages, CER for Chinese.

Normalisation decides the numbers a paper reports, so every rule is explicit and named in reports:
- `english`: Unicode NFKC, lower case, digits spelled out (num2words), `&` -> `and`, punctuation removed
  except in-word apostrophes, whitespace collapsed.
- `chinese`: NFKC (full-width to half-width), traditional -> simplified (OpenCC t2s), Arabic numerals
  -> Chinese numerals (cn2an), punctuation and all whitespace removed, Latin letters lower-cased; scored
  per character.
- `none`: whitespace collapsed only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from stepaudio.errors import MissingExtraError

_PUNCT = re.compile(r"[^\w\s']|_", re.UNICODE)
_APOSTROPHE_EDGES = re.compile(r"(^|\s)'+|'+(\s|$)")
_SPACES = re.compile(r"\s+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")


@dataclass(frozen=True)
class ErrorCounts:
    """Edit operations against `reference_length` units (words or characters)."""

    substitutions: int
    deletions: int
    insertions: int
    reference_length: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        if self.reference_length == 0:
            return 0.0 if self.errors == 0 else 1.0
        return self.errors / self.reference_length

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.reference_length + other.reference_length,
        )


@dataclass(frozen=True)
class UtteranceScore:
    reference: str
    hypothesis: str
    normalized_reference: str
    normalized_hypothesis: str
    counts: ErrorCounts


def normalize_english(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower().replace("&", " and ")
    text = _NUMBER.sub(lambda m: " " + _spell_number(m.group(0)) + " ", text)
    text = _PUNCT.sub(" ", text.replace("-", " "))
    text = _APOSTROPHE_EDGES.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def normalize_chinese(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = _to_simplified(text)
    text = _NUMBER.sub(lambda m: _chinese_number(m.group(0)), text)
    text = _PUNCT.sub("", text.replace("'", ""))
    return _SPACES.sub("", text).lower()


def normalize_none(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "english": normalize_english,
    "chinese": normalize_chinese,
    "none": normalize_none,
}


def language_unit(language: str | None, text: str = "") -> str:
    """'char' for Chinese and Japanese (by code or by script: neither spaces its words), 'word' otherwise."""
    if language:
        return "char" if language.lower().split("-")[0] in ("zh", "cmn", "yue", "chinese", "mandarin", "ja",
                                                            "japanese") else "word"
    return "char" if _CJK.search(text) or _KANA.search(text) else "word"


def score(
    reference: str, hypothesis: str, unit: str = "word", normalizer: str | None = None
) -> UtteranceScore:
    """One utterance; `normalizer` defaults to `english` for words and `chinese` for characters."""
    name = normalizer or ("chinese" if unit == "char" else "english")
    if name not in NORMALIZERS:
        raise ValueError(f"unknown normalizer {name!r}; choose one of {', '.join(NORMALIZERS)}")
    ref, hyp = NORMALIZERS[name](reference), NORMALIZERS[name](hypothesis)
    ref_units = list(ref.replace(" ", "")) if unit == "char" else ref.split()
    hyp_units = list(hyp.replace(" ", "")) if unit == "char" else hyp.split()
    return UtteranceScore(reference, hypothesis, ref, hyp, edit_counts(ref_units, hyp_units))


def corpus_rate(scores: Sequence[UtteranceScore]) -> float:
    """Total errors over total reference units (not the mean of per-utterance rates)."""
    total = ErrorCounts(0, 0, 0, 0)
    for item in scores:
        total = total + item.counts
    return total.rate


def edit_counts(reference: Sequence[str], hypothesis: Sequence[str]) -> ErrorCounts:
    """Levenshtein alignment counts of two unit sequences (units contain no spaces)."""
    if not reference or not hypothesis:
        return ErrorCounts(0, len(reference), len(hypothesis), len(reference))
    try:
        import jiwer
    except ImportError as exc:
        raise MissingExtraError("eval", "jiwer") from exc
    out = jiwer.process_words(" ".join(reference), " ".join(hypothesis))
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, len(reference))


def _spell_number(digits: str) -> str:
    try:
        from num2words import num2words
    except ImportError:
        return digits
    return str(num2words(float(digits) if "." in digits else int(digits)))


def _chinese_number(digits: str) -> str:
    try:
        import cn2an
    except ImportError:
        return digits
    try:
        return str(cn2an.an2cn(digits))
    except Exception:  # cn2an rejects some forms (e.g. leading zeros); keep the digits then
        return digits


@lru_cache(maxsize=1)
def _t2s() -> Any:
    try:
        import opencc
    except ImportError as exc:
        raise MissingExtraError("eval", "opencc") from exc
    return opencc.OpenCC("t2s")


def _to_simplified(text: str) -> str:
    return str(_t2s().convert(text)) if _CJK.search(text) else text
