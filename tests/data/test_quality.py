"""The quality filter on real lite speech: duration sanity bounds and the Whisper round trip."""

from __future__ import annotations

import numpy as np
import pytest

from stepaudio.data.quality import QualityConfig, QualityFilter, duration_problem, spoken_chars
from stepaudio.engines.base import Engine
from stepaudio.errors import StepAudioError

RATE = 22050


def _speak(engine: Engine, text: str) -> np.ndarray:
    assert engine.synthesizer is not None
    return np.concatenate([c.samples for c in engine.synthesizer.synthesize(text, "joe")])


def test_duration_bounds_count_spoken_characters() -> None:
    config = QualityConfig()
    assert spoken_chars("Hi, you!  今天") == 7
    assert duration_problem("hello world", 0.8, config) is None
    assert duration_problem("今天天气真好", 1.6, config) is None
    assert "too short" in str(duration_problem("hello", 0.1, config))
    assert "too slow" in str(duration_problem("hi", 3.0, config))
    assert "too fast" in str(duration_problem("a very long sentence indeed " * 4, 0.5, config))
    assert duration_problem("hi", 3.0, QualityConfig(max_s_per_char=None)) is None
    with pytest.raises(StepAudioError, match="reversed"):
        QualityConfig(min_s_per_char=1.0, max_s_per_char=0.5)


def test_silence_and_a_missing_recognizer_are_caught() -> None:
    judge = QualityFilter(QualityConfig())
    assert judge.check("hello world", np.zeros(RATE, dtype=np.float32), RATE).reason == "silent audio"
    assert judge.check("hello world", np.full(RATE, np.nan, dtype=np.float32), RATE).reason == "non-finite samples"
    with pytest.raises(StepAudioError, match="speech recognizer"):
        QualityFilter(QualityConfig(max_cer=0.3))


def test_round_trip_accepts_matching_speech_and_rejects_the_wrong_text(lite_engine: Engine) -> None:
    samples = _speak(lite_engine, "The weather is lovely this morning.")
    judge = QualityFilter(QualityConfig(max_cer=0.3, asr_language="en"), lite_engine.transcriber)
    good = judge.check("The weather is lovely this morning.", samples, RATE)
    assert good.accepted and good.cer is not None and good.cer <= 0.3 and good.asr_text
    bad = judge.check("Please close the door behind you.", samples, RATE)
    assert not bad.accepted and bad.reason is not None and bad.reason.startswith("wer ")
    assert bad.cer is not None and bad.cer > 0.5
