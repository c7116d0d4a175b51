"""The one spoken turn: what reaches the chat model by declared ability, transcripts only where needed,
sentences spoken while the reply is written, the tool loop, and the history kept by the context manager."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from stepaudio.audio.io import Audio, load_audio
from stepaudio.audio.vad import SileroVad
from stepaudio.engines.base import (
    Abilities,
    AudioChunk,
    CancelToken,
    ChatDelta,
    ChatMessage,
    Engine,
    GenerationOptions,
    ToolCall,
    ToolSpec,
)
from stepaudio.engines.tools import ToolRegistry
from stepaudio.errors import StepAudioError
from stepaudio.realtime.turn import (
    Conversation,
    ReplyAudio,
    ReplyText,
    ToolAnswered,
    ToolCalled,
    TurnDone,
    TurnSettings,
    UserHeard,
    needs_transcriber,
    run_turn,
)
from stepaudio.testing.fakes import CountingTranscriber, ScriptedChat

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class ToolThenAnswer:
    """Calls `add` once, then answers with the result it was given."""

    def __init__(self) -> None:
        self.seen: list[list[ChatMessage]] = []

    def respond(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None = None,
                options: GenerationOptions | None = None, cancel: CancelToken | None = None) -> Iterator[ChatDelta]:
        self.seen.append(list(messages))
        assert tools is not None and [t.name for t in tools] == ["add"]
        if messages[-1].role != "tool":
            yield ChatDelta(tool_calls=(ToolCall("c1", "add", json.dumps({"a": 2, "b": 3})),))
            yield ChatDelta(finish_reason="tool_calls")
            return
        yield ChatDelta(text=f"The sum is {messages[-1].content}.")
        yield ChatDelta(finish_reason="stop")


def clip(seconds: float = 1.0) -> Audio:
    return Audio(np.full(int(16000 * seconds), 0.1, np.float32), 16000)


def hearing(chat: object, transcriber: object | None = None) -> Engine:
    return Engine("hears", transcriber, chat, None, Abilities(hears_audio=True))  # type: ignore[arg-type]


def reading(chat: object, transcriber: object | None = None) -> Engine:
    return Engine("reads", transcriber, chat, None, Abilities(hears_audio=False))  # type: ignore[arg-type]


def test_an_engine_that_hears_gets_the_audio_and_no_transcript_is_made() -> None:
    chat, ears = ScriptedChat(["Hello."]), CountingTranscriber()
    audio = clip()
    events = list(run_turn(hearing(chat, ears), [ChatMessage("user", "", audio=audio)], TurnSettings()))
    assert ears.calls == 0
    assert chat.seen[0][-1].audio is audio and chat.seen[0][-1].transcript is None
    assert not any(isinstance(e, UserHeard) for e in events)
    done = events[-1]
    assert isinstance(done, TurnDone) and done.reply == "Hello."
    assert [(m.role, m.audio is not None) for m in done.messages] == [("user", True), ("assistant", False)]


def test_an_asked_for_transcript_comes_after_the_reply_where_the_engine_hears() -> None:
    chat, ears = ScriptedChat(["Hello."]), CountingTranscriber()
    events = list(run_turn(hearing(chat, ears), [ChatMessage("user", "", audio=clip())],
                           TurnSettings(transcripts="always")))
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["ReplyText", "UserHeard", "TurnDone"] and ears.calls == 1
    done = events[-1]
    assert isinstance(done, TurnDone) and done.messages[0].transcript == "heard 1.0 s"
    assert done.timings.asr is not None


def test_an_engine_that_reads_gets_text_and_transcript_once() -> None:
    chat, ears = ScriptedChat(["Fine."]), CountingTranscriber()
    message = ChatMessage("user", "Listen to this:", audio=clip(0.5))
    assert needs_transcriber(reading(chat, ears), [message], TurnSettings())
    assert not needs_transcriber(hearing(chat, ears), [message], TurnSettings())
    events = list(run_turn(reading(chat, ears), [message], TurnSettings()))
    assert isinstance(events[0], UserHeard) and events[0].text == "heard 0.5 s"
    sent = chat.seen[0][-1]
    assert sent.audio is None and sent.content == "Listen to this:\nheard 0.5 s"
    assert ears.calls == 1


def test_text_and_audio_both_reach_an_engine_that_hears() -> None:
    chat = ScriptedChat(["Fine."])
    audio = clip()
    list(run_turn(hearing(chat), [ChatMessage("user", "What is this sound?", audio=audio)], TurnSettings()))
    assert chat.seen[0][-1].content == "What is this sound?" and chat.seen[0][-1].audio is audio


def test_without_ears_or_recognizer_the_turn_is_refused() -> None:
    with pytest.raises(StepAudioError, match="no speech recognizer"):
        list(run_turn(reading(ScriptedChat(["x"])), [ChatMessage("user", "", audio=clip())], TurnSettings()))


def test_a_failed_transcript_is_reported_and_nothing_is_answered() -> None:
    chat = ScriptedChat(["never"])
    events = list(run_turn(reading(chat, CountingTranscriber(fail=True)), [ChatMessage("user", "", audio=clip())],
                           TurnSettings()))
    assert isinstance(events[0], UserHeard) and "recognizer down" in (events[0].error or "")
    assert isinstance(events[-1], TurnDone) and events[-1].reply == "" and chat.seen == []


def test_tools_run_through_the_loop_and_the_answer_uses_the_result() -> None:
    chat = ToolThenAnswer()
    registry = ToolRegistry({"add": lambda a, b: a + b}, (ToolSpec("add"),))
    events = list(run_turn(reading(chat), [ChatMessage("user", "2 + 3?")], TurnSettings(registry=registry)))
    assert any(isinstance(e, ToolCalled) and e.call.name == "add" for e in events)
    answered = [e.message for e in events if isinstance(e, ToolAnswered)]
    assert [(m.role, m.content) for m in answered] == [("tool", "5")]
    done = events[-1]
    assert isinstance(done, TurnDone) and done.reply == "The sum is 5." and done.finish_reason == "stop"
    assert [m.role for m in done.messages] == ["user", "assistant", "tool", "assistant"]


def test_declared_tools_without_functions_end_the_turn_with_the_call() -> None:
    chat = ToolThenAnswer()
    events = list(run_turn(reading(chat), [ChatMessage("user", "2 + 3?")], TurnSettings(tools=(ToolSpec("add"),))))
    done = events[-1]
    assert isinstance(done, TurnDone) and done.finish_reason == "tool_calls"
    assert [c.name for c in done.tool_calls] == ["add"] and len(chat.seen) == 1


def test_history_is_kept_within_the_token_budget() -> None:
    chat = ScriptedChat(["Fine."])
    conversation = Conversation(reading(chat), max_context_tokens=30, count_tokens=lambda text: 1)
    for question in ("one", "two", "three", "four", "five"):
        done = list(conversation.turn(text=question))[-1]
        assert isinstance(done, TurnDone) and done.reply == "Fine."
    assert [m.content for m in chat.seen[1]] == ["one", "Fine.", "two"]
    kept = [m.content for m in conversation.context.messages()]
    assert kept[-2:] == ["five", "Fine."] and "one" not in kept  # the oldest went first
    assert conversation.stats().dropped_turns > 0


def test_a_spoken_turn_is_kept_as_audio_until_transcribed_then_as_text() -> None:
    chat = ScriptedChat(["Fine."])
    conversation = Conversation(hearing(chat, CountingTranscriber()))
    list(conversation.turn(audio=clip()))
    list(conversation.turn(text="and now?"))
    assert chat.seen[1][0].audio is not None  # the model heard the earlier turn again: no transcript exists
    listening = Conversation(hearing(chat, CountingTranscriber()), TurnSettings(transcripts="always"))
    list(listening.turn(audio=clip()))
    first = listening.context.messages()[0]
    assert first.audio is None and first.content == "heard 1.0 s"
    assert listening.stats().compression_ratio > 1


def test_the_first_sentence_is_spoken_before_the_reply_is_finished(lite_engine: Engine) -> None:
    first_audio_heard = threading.Event()
    chat = ScriptedChat(["Paris is", " the capital.", " It has", " a tall", " tower", " made of iron."],
                        gate=first_audio_heard)
    engine = Engine("scripted", lite_engine.transcriber, chat, lite_engine.synthesizer)  # type: ignore[arg-type]
    events = []
    for event in Conversation(engine).turn(text="Tell me about Paris"):
        events.append(event)
        if isinstance(event, ReplyAudio):
            first_audio_heard.set()  # the model may finish only after the first sentence was heard
    assert chat.gate_opened is True
    first_audio = next(i for i, e in enumerate(events) if isinstance(e, ReplyAudio))
    last_text = max(i for i, e in enumerate(events) if isinstance(e, ReplyText))
    assert first_audio < last_text
    spoken = [e.sentence for e in events if isinstance(e, ReplyAudio) and e.sentence]
    assert spoken == ["Paris is the capital.", "It has a tall tower made of iron."]
    done = events[-1]
    assert isinstance(done, TurnDone)
    assert done.timings.tts_first_audio is not None and done.timings.llm_total is not None


def test_a_spoken_question_gets_a_spoken_answer(lite_engine: Engine) -> None:
    settings = TurnSettings(options=GenerationOptions(temperature=0.0, seed=0, max_new_tokens=40))
    conversation = Conversation(lite_engine, settings, trimmer=SileroVad())
    events = list(conversation.turn(audio=load_audio(EXAMPLES / "question_capital.wav")))
    assert isinstance(events[0], UserHeard) and "capital of France" in events[0].text
    reply = "".join(e.text for e in events if isinstance(e, ReplyText))
    assert "Paris" in reply
    audio = [e.chunk for e in events if isinstance(e, ReplyAudio)]
    assert audio and sum(c.duration for c in audio) > 0.5
    done = events[-1]
    assert isinstance(done, TurnDone)
    t = done.timings
    assert None not in (t.vad, t.asr, t.llm_first_token, t.tts_first_audio)
    assert t.vad <= t.asr <= t.llm_first_token <= t.tts_first_audio <= t.total  # type: ignore[operator]
    assert [m.role for m in conversation.context.messages()] == ["user", "assistant"]


class SpeakingScript(ScriptedChat):
    """Writes and speaks its reply itself: each text piece is followed by that piece's speech."""

    def speak(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None = None,
              options: GenerationOptions | None = None, cancel: CancelToken | None = None,
              voice: object = None) -> Iterator[ChatDelta | AudioChunk]:
        self.seen.append(list(messages))
        for piece in self.pieces:
            yield ChatDelta(text=piece)
            yield AudioChunk(np.full(240, 0.1, np.float32), 24000)
        yield ChatDelta(finish_reason="stop")


class Mute:
    sample_rate = 24000

    def voices(self) -> list[str]:
        return []

    def synthesize(self, *args: object, **kwargs: object) -> Iterator[AudioChunk]:
        raise AssertionError("a model that speaks itself needs no synthesizer")


def test_a_model_that_speaks_itself_is_heard_directly() -> None:
    chat = SpeakingScript(["Hello there.", " Bye."])
    engine = Engine("speaks", None, chat, Mute(), Abilities(hears_audio=True, speaks=True))  # type: ignore[arg-type]
    events = list(run_turn(engine, [ChatMessage("user", "", audio=clip())], TurnSettings()))
    assert [e.sentence for e in events if isinstance(e, ReplyAudio)] == ["Hello there.", "Bye."]
    done = events[-1]
    assert isinstance(done, TurnDone) and done.reply == "Hello there. Bye."
    assert done.timings.tts_first_audio is not None
    written = list(run_turn(engine, [ChatMessage("user", "hi")], TurnSettings(speak=False)))
    assert not any(isinstance(e, ReplyAudio) for e in written)  # text only: its speech is not asked for
