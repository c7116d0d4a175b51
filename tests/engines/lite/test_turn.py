from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from stepaudio.audio.io import load_audio
from stepaudio.engines.base import CancelToken, ChatDelta, ChatMessage, Engine, GenerationOptions, ToolSpec
from stepaudio.engines.lite.turn import Conversation
from stepaudio.engines.lite.vad import SileroVad

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


class ScriptedChat:
    """Replies with fixed pieces; with a `gate`, it holds its last piece until the gate opens."""

    def __init__(self, pieces: list[str], gate: threading.Event | None = None) -> None:
        self.pieces, self.gate, self.seen = pieces, gate, []  # type: ignore[var-annotated]
        self.gate_opened: bool | None = None

    def respond(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None = None,
                options: GenerationOptions | None = None, cancel: CancelToken | None = None) -> Iterator[ChatDelta]:
        self.seen.append(list(messages))
        for index, piece in enumerate(self.pieces):
            if self.gate is not None and index == len(self.pieces) - 1:
                self.gate_opened = self.gate.wait(timeout=60)
            yield ChatDelta(text=piece)
        yield ChatDelta(finish_reason="stop")


def test_the_first_sentence_is_spoken_before_the_reply_is_finished(lite_engine: Engine) -> None:
    first_audio_heard = threading.Event()
    chat = ScriptedChat(["Paris is", " the capital.", " It has", " a tall", " tower", " made of iron."],
                        gate=first_audio_heard)
    engine = Engine("scripted", lite_engine.transcriber, chat, lite_engine.synthesizer)
    events = []
    for event in Conversation(engine=engine).turn(text="Tell me about Paris"):
        events.append(event)
        if event.kind == "audio":
            first_audio_heard.set()  # the model may finish only after the first sentence was heard
    assert chat.gate_opened is True
    kinds = [(e.kind, e.text) for e in events]
    first_audio = kinds.index(("audio", "Paris is the capital."))
    assert first_audio < kinds.index(("text", " made of iron."))
    spoken = [e.text for e in events if e.kind == "audio"]
    assert spoken == ["Paris is the capital.", "It has a tall tower made of iron."]
    timings = events[-1].timings
    assert events[-1].kind == "done" and timings is not None
    assert timings.tts_first_audio is not None and timings.llm_total is not None


def test_history_is_kept_across_turns_and_trimmed() -> None:
    chat = ScriptedChat(["Fine."])
    conversation = Conversation(engine=Engine("scripted", None, chat, None), max_messages=4)
    for question in ("one", "two", "three"):
        assert [e.kind for e in conversation.turn(text=question)] == ["text", "done"]
    assert [m.content for m in chat.seen[1]] == ["one", "Fine.", "two"]
    assert [m.content for m in conversation.history] == ["two", "Fine.", "three", "Fine."]


def test_a_spoken_question_gets_a_spoken_answer(lite_engine: Engine) -> None:
    conversation = Conversation(engine=lite_engine, vad=SileroVad(),
                                options=GenerationOptions(temperature=0.0, seed=0, max_new_tokens=40))
    events = list(conversation.turn(audio=load_audio(EXAMPLES / "question_capital.wav")))
    assert events[0].kind == "transcript" and "capital of France" in events[0].text
    reply = "".join(e.text for e in events if e.kind == "text")
    assert "Paris" in reply
    audio = [e.chunk for e in events if e.kind == "audio" and e.chunk is not None]
    assert audio and sum(c.duration for c in audio) > 0.5
    timings = events[-1].timings
    assert timings is not None and None not in (timings.vad, timings.asr, timings.llm_first_token,
                                                timings.tts_first_audio)
    assert timings.vad <= timings.asr <= timings.llm_first_token <= timings.tts_first_audio <= timings.total
    assert [m.role for m in conversation.history] == ["user", "assistant"]
