from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from stepaudio.engines.base import ChatMessage, ChatModel, Engine, GenerationOptions, Synthesizer, Transcriber
from stepaudio.engines.lite.engine import Activity, LiteConfig, create_engine
from stepaudio.errors import MissingExtraError, StepAudioError


def test_engine_creation_is_lazy_and_implements_the_interfaces(tmp_path: Path) -> None:
    pytest.importorskip("faster_whisper", reason="lite extra not installed")
    engine = create_engine(chat_model="smollm2", cache_dir=str(tmp_path), threads=1)
    assert engine.name == "lite"
    assert isinstance(engine.transcriber, Transcriber)
    assert isinstance(engine.chat, ChatModel)
    assert isinstance(engine.synthesizer, Synthesizer) and engine.synthesizer.sample_rate == 22050
    assert list(tmp_path.iterdir()) == []  # nothing assembled or loaded until first use


def test_options_are_checked() -> None:
    config = LiteConfig.from_options({"model_path": "my.gguf", "threads": 1, "device": "cpu", "beam_size": None})
    assert (config.chat_model, config.threads, config.beam_size) == ("my.gguf", 1, 1)
    with pytest.raises(StepAudioError, match="no option colour"):
        LiteConfig.from_options({"colour": "red"})
    with pytest.raises(StepAudioError, match="CPU only"):
        LiteConfig.from_options({"device": "cuda"})


def test_asr_languages_come_from_a_comma_list_or_a_list() -> None:
    assert LiteConfig().asr_languages == ("zh", "en", "ja", "ko")
    assert LiteConfig.from_options({"asr_languages": "zh, ja"}).asr_languages == ("zh", "ja")
    assert LiteConfig.from_options({"asr_languages": ["en"]}).asr_languages == ("en",)
    assert LiteConfig.from_options({"asr_languages": ""}).asr_languages == ()  # any language


def test_activity_counts_work_until_it_ends_or_is_dropped() -> None:
    activity = Activity()
    first, second = activity.during(iter([1, 2])), activity.during(iter("ab"))
    assert not activity.busy()  # nothing asked for yet
    assert next(first) == 1 and next(second) == "a" and activity.busy()
    assert list(first) == [2] and activity.busy()  # the other one still runs
    second.close()  # its caller stopped listening
    assert not activity.busy()
    failing = activity.during(_fails())
    with pytest.raises(RuntimeError, match="engine failed"):
        list(failing)
    assert not activity.busy()


def _fails() -> Iterator[int]:
    yield 1
    raise RuntimeError("engine failed")


def test_recognition_ahead_waits_while_a_reply_is_spoken() -> None:
    """The streams of turns being spoken see the engine busy while any sentence is synthesized (default), or
    never with asr_stream_busy on."""
    pytest.importorskip("faster_whisper", reason="lite extra not installed")
    engine = create_engine()
    assert engine.transcriber is not None and engine.synthesizer is not None
    stream = engine.transcriber.listen(16000, "en")  # type: ignore[attr-defined]
    assert stream.busy is not None and not stream.busy()
    speech = engine.synthesizer.synthesize("Hello there, how are you?")
    next(speech)
    assert stream.busy()
    list(speech)
    assert not stream.busy()
    assert LiteConfig().asr_stream_busy is False
    anyway = create_engine(asr_stream_busy="on")
    assert anyway.transcriber.listen(16000, "en").busy is None  # type: ignore[union-attr]
    with pytest.raises(StepAudioError, match="asr_stream_busy is on or off"):
        create_engine(asr_stream_busy="sometimes")


def test_a_reply_gets_the_solo_chat_context_only_while_nothing_else_runs(lite_engine: Engine) -> None:
    """Alone, a reply holds the solo context (more threads); while a sentence is synthesized it goes to the
    shared one and leaves the solo context free."""
    chat, synthesizer = lite_engine.chat, lite_engine.synthesizer
    assert chat is not None and synthesizer is not None
    model = chat._model.get()  # type: ignore[attr-defined]
    assert model._solo is not None  # the default: the usable cores, up to 4 (CI has 2)
    question = [ChatMessage("user", "What is the capital of France?")]
    options = GenerationOptions(temperature=0.0, max_new_tokens=8)
    reply = chat.respond(question, options=options)
    alone = next(reply).text
    assert not model._solo.gate.acquire(blocking=False)  # this reply holds it
    alone += "".join(d.text for d in reply)
    assert model._solo.gate.acquire(blocking=False)  # released at the end
    model._solo.gate.release()
    speech = synthesizer.synthesize("Hello there, how are you?")
    next(speech)
    reply = chat.respond(question, options=options)
    beside = next(reply).text
    assert model._solo.gate.acquire(blocking=False)  # the sentence being spoken sent the reply to the shared one
    model._solo.gate.release()
    beside += "".join(d.text for d in reply)
    list(speech)
    assert beside == alone and "Paris" in alone  # either context writes the same reply


def test_solo_threads_and_the_tentative_end_are_checked() -> None:
    assert 1 <= LiteConfig().chat_solo_threads <= 4
    assert LiteConfig.from_options({"chat_solo_threads": 0}).chat_solo_threads == 0
    for bad in (-1, "two"):
        with pytest.raises(StepAudioError, match="chat_solo_threads is a thread count"):
            LiteConfig.from_options({"chat_solo_threads": bad})
        with pytest.raises(StepAudioError, match="speculative_silence_ms is milliseconds"):
            LiteConfig.from_options({"speculative_silence_ms": bad})
    assert create_engine().speculative_silence_ms == LiteConfig().speculative_silence_ms == 100
    assert create_engine(speculative_silence_ms=200).speculative_silence_ms == 200  # what sessions start from


def test_kokoro_options_reach_its_speaker() -> None:
    assert (LiteConfig().kokoro_tuning, LiteConfig().kokoro_threads) == (True, 2)
    config = LiteConfig.from_options({"kokoro_tuning": "off", "kokoro_threads": 1})
    assert (config.kokoro_tuning, config.kokoro_threads) == (False, 1)
    with pytest.raises(StepAudioError, match="kokoro_tuning is on or off"):
        LiteConfig.from_options({"kokoro_tuning": "fast"})


def test_whisper_small_explains_why_it_is_not_packaged() -> None:
    from stepaudio.engines.lite.engine import _resolve

    with pytest.raises(StepAudioError, match="incomplete"):
        _resolve("small", None)


# The spoken Mandarin questions of examples/questions-zh (synthetic: Kokoro voices, see examples/README.md).
QUESTIONS_ZH = Path(__file__).resolve().parents[3] / "examples" / "questions-zh"
_CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def qwen_engine() -> Engine:
    """The lite engine as users get it (Qwen2.5-Coder-0.5B-Instruct), Kokoro's voices not needed."""
    pytest.importorskip("xllamacpp")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from stepaudio.engines.lite import models, resolver

    try:
        resolver.resolve(models.QWEN25_CODER_05B)
        resolver.resolve(models.WHISPER_BASE)
    except MissingExtraError as exc:
        pytest.skip(str(exc))
    return create_engine()


def _questions() -> list[dict[str, str]]:
    return [json.loads(line) for line in (QUESTIONS_ZH / "manifest.jsonl").read_text("utf-8").splitlines()]


def _spoken_turn(engine: Engine, question: dict[str, str]) -> tuple[str, str]:
    """What Whisper heard (no language given: detected) and the chat model's reply, greedily."""
    from stepaudio.audio.io import load_audio
    from stepaudio.engines.base import GenerationOptions
    from stepaudio.realtime.turn import Conversation, TurnDone, TurnSettings, UserHeard

    settings = TurnSettings(speak=False, options=GenerationOptions(temperature=0.0, seed=0))
    heard, reply = "", ""
    for event in Conversation(engine, settings).turn(audio=load_audio(QUESTIONS_ZH / question["audio"])):
        if isinstance(event, UserHeard):
            heard = event.text
        elif isinstance(event, TurnDone):
            reply = event.reply
    return heard, reply


def _understood_and_answered_in_mandarin(question: dict[str, str], heard: str, reply: str) -> bool:
    from stepaudio.eval.bench.lite import error_rate

    return error_rate([(question["text"], heard)], unit="char") <= 0.2 and len(_CJK.findall(reply)) >= 2


def test_a_spoken_mandarin_question_is_answered_in_mandarin(qwen_engine: Engine) -> None:
    question = _questions()[0]
    heard, reply = _spoken_turn(qwen_engine, question)
    assert _understood_and_answered_in_mandarin(question, heard, reply), (heard, reply)
    assert "北京" in reply, reply


@pytest.mark.slow  # six spoken turns through Whisper base and Qwen: ~30 s on two cores
def test_five_of_six_spoken_mandarin_questions_are_understood_and_answered_in_mandarin(qwen_engine: Engine) -> None:
    questions = _questions()
    assert len(questions) == 6 and len({q["voice"] for q in questions}) == 6
    turns = [_spoken_turn(qwen_engine, q) for q in questions]
    passed = sum(_understood_and_answered_in_mandarin(q, *turn) for q, turn in zip(questions, turns, strict=True))
    assert passed >= 5, turns
