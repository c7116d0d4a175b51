"""The quality filter: duration sanity and an ASR round trip, so broken syntheses never reach training.

Duration sanity bounds the seconds per spoken character (letters, digits, CJK characters; punctuation and
spaces do not count): silence, a cut-off synthesis or a runaway loop falls far outside the bounds that
every language and speed lands in. The round trip transcribes the audio with an engine's `Transcriber`
and scores it against the text with `text.metrics` (CER for Chinese, WER for space-delimited languages).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from stepaudio.audio.io import Audio
from stepaudio.engines.base import Transcriber
from stepaudio.errors import StepAudioError
from stepaudio.text.metrics import language_unit, score

_SPOKEN = re.compile(r"\w", re.UNICODE)


@dataclass(frozen=True)
class QualityConfig:
    """`max_cer` None: no ASR round trip. Duration bounds None: that bound is not checked."""

    max_cer: float | None = None
    min_s_per_char: float | None = 0.02
    max_s_per_char: float | None = 0.6
    min_duration_s: float = 0.2
    asr_language: str | None = None

    def __post_init__(self) -> None:
        if self.max_cer is not None and self.max_cer < 0:
            raise StepAudioError(f"max CER must be non-negative, got {self.max_cer}")
        low, high = self.min_s_per_char, self.max_s_per_char
        if low is not None and high is not None and low > high:
            raise StepAudioError(f"seconds per character bounds are reversed: {low} > {high}")


@dataclass(frozen=True)
class QualityResult:
    reason: str | None = None  # None: accepted
    asr_text: str | None = None
    cer: float | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is None


def spoken_chars(text: str) -> int:
    return len(_SPOKEN.findall(text))


def duration_problem(text: str, duration_s: float, config: QualityConfig) -> str | None:
    """Why the duration cannot be right for the text, or None."""
    if duration_s < config.min_duration_s:
        return f"too short: {duration_s:.2f} s < {config.min_duration_s:g} s"
    chars = max(spoken_chars(text), 1)
    per_char = duration_s / chars
    if config.min_s_per_char is not None and per_char < config.min_s_per_char:
        return f"too fast: {per_char:.3f} s/char < {config.min_s_per_char:g}"
    if config.max_s_per_char is not None and per_char > config.max_s_per_char:
        return f"too slow: {per_char:.3f} s/char > {config.max_s_per_char:g}"
    return None


class QualityFilter:
    """Judges one synthesis; needs a `transcriber` only when `max_cer` is set."""

    def __init__(self, config: QualityConfig, transcriber: Transcriber | None = None) -> None:
        if config.max_cer is not None and transcriber is None:
            raise StepAudioError("the CER filter needs an engine with a speech recognizer (Transcriber)")
        self.config = config
        self._transcriber = transcriber

    def check(self, text: str, samples: np.ndarray, sample_rate: int) -> QualityResult:
        duration = len(samples) / sample_rate
        if not np.all(np.isfinite(samples)):
            return QualityResult(reason="non-finite samples")
        if not len(samples) or float(np.max(np.abs(samples))) < 1e-4:
            return QualityResult(reason="silent audio")
        problem = duration_problem(text, duration, self.config)
        if problem:
            return QualityResult(reason=f"duration {problem}")
        if self.config.max_cer is None or self._transcriber is None:
            return QualityResult()
        transcript = self._transcriber.transcribe(Audio(samples, sample_rate), language=self.config.asr_language)
        unit = language_unit(self.config.asr_language, text)
        rate = score(text, transcript.text, unit=unit).counts.rate
        rate = round(float(rate), 4)
        reason = None
        if rate > self.config.max_cer:
            reason = f"{'cer' if unit == 'char' else 'wer'} {rate:.2f} > {self.config.max_cer:g}"
        return QualityResult(reason=reason, asr_text=transcript.text, cer=rate)
