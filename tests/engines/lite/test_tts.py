from __future__ import annotations

import numpy as np
import pytest

from stepaudio.engines.base import CancelToken, Engine, SpeechInstructions, Voice
from stepaudio.engines.lite.tts import clean_for_speech, pick_voice
from stepaudio.errors import StepAudioError, TagError
from stepaudio.eval.bench.lite import error_rate


def _speech(chunks: list) -> np.ndarray:  # type: ignore[type-arg]
    return np.concatenate([c.samples for c in chunks])


def test_english_streams_one_chunk_per_sentence_and_whisper_hears_it(lite_engine: Engine) -> None:
    assert lite_engine.synthesizer is not None and lite_engine.transcriber is not None
    text = "The museum opens at nine. Please turn off the lights before you leave."
    chunks = list(lite_engine.synthesizer.synthesize(text))
    assert [c.text for c in chunks] == ["The museum opens at nine.", "Please turn off the lights before you leave."]
    assert [c.is_last for c in chunks] == [False, True]
    assert all(c.sample_rate == 22050 == lite_engine.synthesizer.sample_rate for c in chunks)
    assert all(0.5 < c.duration < 6 and np.abs(c.samples).max() > 0.1 for c in chunks)
    from stepaudio.audio.io import Audio

    heard = lite_engine.transcriber.transcribe(Audio(_speech(chunks), 22050), language="en").text
    assert error_rate([(text, heard)]) <= 0.1, heard


def test_speed_changes_duration(lite_engine: Engine) -> None:
    assert lite_engine.synthesizer is not None
    text = "Remember to water the plants."
    normal = _speech(list(lite_engine.synthesizer.synthesize(text)))
    slow = _speech(list(lite_engine.synthesizer.synthesize(text, instructions=SpeechInstructions(speed="slower"))))
    fast_zh = _speech(list(lite_engine.synthesizer.synthesize("(快速2)我们晚上一起吃饭吧。")))
    normal_zh = _speech(list(lite_engine.synthesizer.synthesize("我们晚上一起吃饭吧。")))
    assert len(slow) > 1.3 * len(normal)
    assert len(fast_zh) < 0.8 * len(normal_zh)


@pytest.mark.parametrize(("voice", "repeats", "tolerance"), [("en-us", 1, 0.02), ("cmn", 1, 0.02), ("joe", 5, 0.05)])
def test_speed_factors_give_durations_in_proportion(lite_engine: Engine, voice: str, repeats: int,
                                                    tolerance: float) -> None:
    """0.25x is four times as long and 4x a quarter (the voices' own rate controls gave 2.05x (Piper) and 2.5x
    (espeak) at 4x). Piper samples its phoneme durations: one synthesis of this sentence is within ~4 % of the
    median length and a ratio of two such within ~8 %, so its lengths are medians of five syntheses."""
    assert lite_engine.synthesizer is not None
    synthesizer = lite_engine.synthesizer
    text = "我们晚上一起吃饭吧。" if voice == "cmn" else "Remember to water the plants."

    def length(speed: float | None) -> float:
        instructions = SpeechInstructions(speed=speed) if speed else None
        return float(np.median([len(_speech(list(synthesizer.synthesize(text, voice, instructions))))
                                for _ in range(repeats)]))

    normal = length(None)
    for speed in (0.25, 0.5, 2.0, 4.0):
        assert length(speed) * speed / normal == pytest.approx(1.0, abs=tolerance), speed


def test_chinese_japanese_and_cantonese_each_get_a_voice(lite_engine: Engine) -> None:
    """Mandarin and Japanese default to Kokoro where it is installed (test_kokoro.py), else espeak; Cantonese
    and Korean are espeak's; an espeak code names the espeak voice even where Kokoro is there."""
    assert lite_engine.synthesizer is not None
    voices = lite_engine.synthesizer.voices()
    assert {"joe", "cmn", "yue", "ja", "ko"} <= set(voices)
    for text, voice in (("今天天气很好。", None), ("(粤语)今日天气好好。", None), ("これはペンです。", None),
                        ("今天天气很好。", "cmn"), ("안녕하세요.", "zh-yunjian" if "zh-yunjian" in voices else None)):
        chunks = list(lite_engine.synthesizer.synthesize(text, voice))
        assert len(chunks) == 1 and chunks[0].duration > 0.5 and chunks[0].sample_rate == 22050


def _median_f0(samples: np.ndarray, rate: int = 22050) -> float:
    """Median autocorrelation pitch of the loud frames, 70-400 Hz."""
    frame, estimates = 1024, []
    loud = 0.3 * np.abs(samples).max()
    for start in range(0, len(samples) - frame, frame // 2):
        piece = samples[start : start + frame]
        if np.abs(piece).max() < loud:
            continue
        corr = np.correlate(piece, piece, "full")[frame - 1 :]
        low, high = rate // 400, rate // 70
        estimates.append(rate / (low + int(np.argmax(corr[low:high]))))
    return float(np.median(estimates))


def test_pitch_raises_the_espeak_voice_and_warns_for_piper(lite_engine: Engine) -> None:
    assert lite_engine.synthesizer is not None
    text = "我们晚上一起吃饭吧。"
    normal = _speech(list(lite_engine.synthesizer.synthesize(text, "cmn")))
    high = _speech(list(lite_engine.synthesizer.synthesize(text, "cmn", SpeechInstructions(pitch=8))))
    assert _median_f0(high) > 1.2 * _median_f0(normal)
    with pytest.warns(UserWarning, match="pitch"):
        list(lite_engine.synthesizer.synthesize("Hello.", "joe", SpeechInstructions(pitch=3)))
    if "ja-alpha" in lite_engine.synthesizer.voices():
        with pytest.warns(UserWarning, match="pitch"):
            list(lite_engine.synthesizer.synthesize("はい。", "ja-alpha", SpeechInstructions(pitch=3)))


def test_pick_voice_by_script_and_cleanup() -> None:
    assert [pick_voice(t) for t in ("Hello", "你好", "こんにちは", "안녕하세요")] == ["joe", "cmn", "ja", "ko"]
    assert clean_for_speech("**Paris** is `great` 🎉!") == "Paris is great !"


def test_unsupported_instructions_warn_or_raise(lite_engine: Engine) -> None:
    assert lite_engine.synthesizer is not None
    with pytest.warns(UserWarning, match="高兴1"):
        chunks = list(lite_engine.synthesizer.synthesize("(高兴1)Hello there."))
    assert chunks and chunks[0].text == "Hello there."
    with pytest.warns(UserWarning, match="read as text"):
        chunks = list(lite_engine.synthesizer.synthesize("(Note: it rains) Take a coat."))
    assert chunks[0].text == "(Note: it rains) Take a coat."
    with pytest.raises(TagError, match="开心"):
        list(lite_engine.synthesizer.synthesize("(开心)你好", instructions=SpeechInstructions(strict=True)))
    with pytest.raises(TagError, match="RAP"):
        list(lite_engine.synthesizer.synthesize("Hello.", instructions=SpeechInstructions(style="rap", strict=True)))
    with pytest.raises(StepAudioError, match="clone"):
        list(lite_engine.synthesizer.synthesize("Hello.", Voice("me", prompt_audio=__import__("pathlib").Path("x"))))


def test_cancel_stops_before_the_next_sentence(lite_engine: Engine) -> None:
    assert lite_engine.synthesizer is not None
    cancel = CancelToken()
    got = []
    for chunk in lite_engine.synthesizer.synthesize("One. Two. Three. Four.", cancel=cancel):
        got.append(chunk)
        cancel.cancel()
    assert len(got) == 1


def test_voice_listing_and_synthesis_from_many_threads_at_once() -> None:
    """libespeak-ng aborts the process when two threads list voices at once; every call must serialise."""
    from concurrent.futures import ThreadPoolExecutor

    from stepaudio.engines.lite.espeak_lib import open_espeak

    espeak = open_espeak()
    with ThreadPoolExecutor(8) as pool:
        listings = list(pool.map(lambda _: espeak.voices(), range(32)))
        spoken = list(pool.map(lambda i: espeak.synthesize(f"测试{i}", "cmn"), range(4)))
    assert all(listing == listings[0] for listing in listings) and len(listings[0]) > 10
    assert all(samples.size > 0 for samples in spoken)
