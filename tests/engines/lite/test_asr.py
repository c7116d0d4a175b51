from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stepaudio.audio.io import Audio, load_audio
from stepaudio.engines.base import Engine
from stepaudio.engines.lite.asr import normalize_language
from stepaudio.eval.bench.lite import error_rate

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
SHORT = ("sense_and_sensibility_01_austen_64kb-0880", "sense_and_sensibility_01_austen_64kb-0930")


def _librivox_wer(engine: Engine, librivox: dict[Path, str], stems: tuple[str, ...] | None) -> None:
    assert engine.transcriber is not None
    pairs = []
    for path, reference in librivox.items():
        if stems is not None and path.stem not in stems:
            continue
        transcript = engine.transcriber.transcribe(load_audio(path), language="en")
        pairs.append((reference, transcript.text))
        assert transcript.language == "en" and transcript.segments
        assert 0 < transcript.duration < 10
    assert sum(len(ref.split()) for ref, _ in pairs) > 10
    assert error_rate(pairs) <= 0.05, pairs


def test_whisper_base_transcribes_real_librivox_speech(lite_engine: Engine, librivox: dict[Path, str]) -> None:
    _librivox_wer(lite_engine, librivox, SHORT)


@pytest.mark.slow
def test_whisper_base_wer_on_all_librivox_recordings(lite_engine: Engine, librivox: dict[Path, str]) -> None:
    _librivox_wer(lite_engine, librivox, None)


def test_spoken_language_is_detected_in_one_pass(lite_engine: Engine) -> None:
    assert lite_engine.transcriber is not None
    transcript = lite_engine.transcriber.transcribe(load_audio(EXAMPLES / "question_capital.wav"))
    assert transcript.language == "en" and transcript.text == "What is the capital of France?"


def test_mandarin_comes_out_in_simplified_characters(lite_engine: Engine) -> None:
    pytest.importorskip("opencc", reason="opencc converts Whisper's traditional characters")
    assert lite_engine.transcriber is not None and lite_engine.synthesizer is not None
    text = "今天天气很好，我们一起去公园散步吧。"
    chunks = list(lite_engine.synthesizer.synthesize(text, "cmn"))
    heard = lite_engine.transcriber.transcribe(Audio(chunks[0].samples, chunks[0].sample_rate), language="zh")
    assert heard.language == "zh"
    assert error_rate([(text, heard.text)], "char") <= 0.2, heard.text


def test_language_names_map_to_whisper_codes() -> None:
    assert normalize_language("cantonese") == "zh"
    assert normalize_language("en-US") == "en"
    assert normalize_language("auto") is None and normalize_language(None) is None


def test_vad_finds_speech_in_a_recording_and_none_in_noise(librivox: dict[Path, str]) -> None:
    from stepaudio.engines.lite.vad import SileroVad

    vad = SileroVad()
    path = next(iter(librivox))
    audio = load_audio(path)
    padded = Audio(np.concatenate([np.zeros(16000, np.float32), audio.resampled(16000).samples,
                                   np.zeros(16000, np.float32)]), 16000)
    trimmed, spans = vad.trim(padded)
    assert spans and spans[0].start >= 0.7 and spans[-1].end <= padded.duration - 0.7
    assert abs(trimmed.duration - audio.duration) < 0.8
    noise = Audio(np.random.default_rng(0).normal(0, 0.01, 32000).astype(np.float32), 16000)
    assert vad.spans(noise) == []


def test_echoes_of_the_mandarin_prompt_are_dropped() -> None:
    from stepaudio.engines.lite.asr import INITIAL_PROMPTS, _without_prompt

    prompt = INITIAL_PROMPTS["zh"]
    assert _without_prompt("以下是普通话。", prompt) == ""
    assert _without_prompt(prompt, prompt) == ""
    assert _without_prompt("今天天气很好。", prompt) == "今天天气很好。"
    assert _without_prompt("hello", None) == "hello"
