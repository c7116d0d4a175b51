from __future__ import annotations

import pytest

from stepaudio.engines.base import SpeechInstructions
from stepaudio.engines.lite.instructions import plan_speech
from stepaudio.errors import TagError


def test_speed_comes_from_tags_friendly_words_or_factors() -> None:
    assert plan_speech(None, ("慢速1",)).speed == pytest.approx(0.8)
    assert plan_speech(SpeechInstructions(speed="faster")).speed == pytest.approx(1.5)
    assert plan_speech(SpeechInstructions(speed=1.2)).speed == pytest.approx(1.2)
    assert plan_speech(SpeechInstructions(speed=0.5), ("快速1",)).speed == pytest.approx(0.625)
    with pytest.raises(TagError):
        plan_speech(SpeechInstructions(speed=0.0))
    assert plan_speech(SpeechInstructions(speed=4.0)).speed == 4.0
    with pytest.raises(TagError, match=r"0\.25\.\.4"):
        plan_speech(SpeechInstructions(speed=4.0), ("快速1",))


def test_language_and_dialect_choose_a_voice() -> None:
    assert plan_speech(None, ("粤语",)).voice == "yue"
    assert plan_speech(SpeechInstructions(dialect="japanese")).voice == "ja"
    assert plan_speech(SpeechInstructions(dialect="english")).voice == "joe"
    assert plan_speech(None).voice is None
    plan = plan_speech(SpeechInstructions(pitch=2.0, volume=0.5))
    assert (plan.pitch, plan.volume) == (2.0, 0.5)


def test_emotion_and_rap_warn_naming_them_or_raise_when_strict() -> None:
    with pytest.warns(UserWarning, match=r"高兴1.*RAP|RAP.*高兴1"):
        plan = plan_speech(SpeechInstructions(emotion="happy", style="rap", speed="slow"))
    assert plan.speed == pytest.approx(0.8)  # what can be applied still is
    with pytest.raises(TagError, match="悲伤1"):
        plan_speech(SpeechInstructions(emotion="sad", strict=True))
    with pytest.raises(TagError, match="哼唱"):
        plan_speech(SpeechInstructions(strict=True), ("哼唱",))


def test_sichuanese_is_approximated_out_loud() -> None:
    with pytest.warns(UserWarning, match="Sichuanese"):
        assert plan_speech(SpeechInstructions(dialect="sichuanese")).voice == "cmn"
    with pytest.raises(TagError, match="Sichuanese"):
        plan_speech(SpeechInstructions(dialect="sichuanese", strict=True))
