"""RealtimeSession with small deterministic components: an energy VAD on synthetic tones, and a transcriber,
chat model and synthesiser written here against the engine Protocols. The same scenario runs against the
real lite engine behind the slow marker."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from stepaudio.audio.io import Audio, load_audio
from stepaudio.audio.vad import WindowedVad
from stepaudio.engines.base import (
    AudioChunk,
    CancelToken,
    ChatDelta,
    ChatMessage,
    ChatModel,
    Engine,
    GenerationOptions,
    SpeechInstructions,
    StreamingTranscriber,
    Synthesizer,
    ToolCall,
    ToolSpec,
    Transcriber,
    Transcript,
    Voice,
)
from stepaudio.errors import AudioError, StepAudioError
from stepaudio.realtime import events as ev
from stepaudio.realtime.controller import Phase
from stepaudio.realtime.session import RealtimeSession, SessionConfig, asyncio_sink
from stepaudio.realtime.turns import TurnDetectionConfig

RATE = 16000


def energy_vad(frame: np.ndarray) -> float:
    """Speech probability from loudness: 0 below -40 dBFS RMS, 1 above -20 dBFS."""
    rms = float(np.sqrt(np.mean(np.square(frame)))) + 1e-12
    return float(np.clip((20 * np.log10(rms) + 40) / 20, 0.0, 1.0))


def tone(seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.random.default_rng(0).normal(0, 1e-4, int(seconds * rate)).astype(np.float32)


class ToneTranscriber:
    """Says how long the voiced part of the audio lasts, in tenths of a second."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def transcribe(self, audio: Audio, language: str | None = None) -> Transcript:
        assert audio.sample_rate == RATE
        self.calls.append(audio.duration)
        blocks = audio.samples[: len(audio.samples) // 160 * 160].reshape(-1, 160)  # 10 ms
        voiced = int((np.sqrt(np.mean(np.square(blocks), axis=1)) > 0.05).sum())
        tenths = round(voiced / 10)
        return Transcript(f"tone {tenths}", duration=audio.duration)


class ToneStream:
    """A `TranscriptStream` double: an update per 0.5 s of new audio; the transcript of the first n samples
    pushed, as `ToneTranscriber` would give it."""

    def __init__(self) -> None:
        self.pieces: list[np.ndarray] = []
        self.decoded = 0
        self.updates = 0
        self.finals: list[int] = []
        self.heard_at_update: list[int] = []  # samples pushed when each update decoded

    @property
    def count(self) -> int:
        return sum(piece.size for piece in self.pieces)

    def push(self, samples: np.ndarray) -> None:
        self.pieces.append(np.array(samples, dtype=np.float32))

    def update(self) -> bool:
        if self.count - self.decoded < RATE // 2:
            return False
        self.decoded, self.updates = self.count, self.updates + 1
        self.heard_at_update.append(self.count)
        return True

    @property
    def final_text(self) -> str:
        """The tones of the audio the last update decoded (a double: settled as soon as decoded)."""
        return ToneTranscriber().transcribe(Audio(np.concatenate(self.pieces)[: self.decoded], RATE)).text \
            if self.decoded else ""

    @property
    def heard_text(self) -> str:
        return self.final_text

    def transcript(self, samples: int | None = None) -> Transcript:
        heard = np.concatenate(self.pieces)[:samples]
        self.finals.append(heard.size)
        return ToneTranscriber().transcribe(Audio(heard, RATE))


class StreamingToneTranscriber(ToneTranscriber):
    """`ToneTranscriber` that also hears turns while they are spoken (calls of `transcribe` are one-pass ones)."""

    def __init__(self) -> None:
        super().__init__()
        self.streams: list[ToneStream] = []

    def listen(self, sample_rate: int, language: str | None = None) -> ToneStream:
        assert sample_rate == RATE
        self.streams.append(ToneStream())
        return self.streams[-1]


class EchoChat:
    """Replies 'You said <last user text>.' followed by `extra` words, one word per delta."""

    def __init__(self, extra: int = 0) -> None:
        self.extra = extra
        self.seen: list[list[ChatMessage]] = []

    def respond(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None = None,
                options: GenerationOptions | None = None, cancel: CancelToken | None = None) -> Iterator[ChatDelta]:
        self.seen.append(list(messages))
        last = next(m.content for m in reversed(messages) if m.role == "user")
        words = f"You said {last}.".split() + [f"word{i}" for i in range(self.extra)]
        for index, word in enumerate(words):
            if cancel is not None and cancel.cancelled:
                yield ChatDelta(finish_reason="cancelled")
                return
            yield ChatDelta(text=word if index == 0 else " " + word)
        yield ChatDelta(finish_reason="stop")


class ReadingEchoChat(EchoChat):
    """`EchoChat` that also reads a reply's prompt ahead (`PreparingChat`): the prompts it was given."""

    def __init__(self, extra: int = 0) -> None:
        super().__init__(extra)
        self.prepared: list[list[ChatMessage]] = []

    def prepare(self, messages: Sequence[ChatMessage]) -> None:
        self.prepared.append(list(messages))


class BeepSynthesizer:
    """0.1 s of a tone per word, in one chunk per word."""

    sample_rate = 8000

    def voices(self) -> list[str]:
        return ["beep"]

    def synthesize(self, text: str, voice: Voice | str | None = None,
                   instructions: SpeechInstructions | None = None,
                   cancel: CancelToken | None = None) -> Iterator[AudioChunk]:
        words = text.split()
        for index, _word in enumerate(words):
            if cancel is not None and cancel.cancelled:
                return
            yield AudioChunk(tone(0.1, self.sample_rate), self.sample_rate, is_last=index == len(words) - 1)


def test_doubles_satisfy_the_engine_protocols() -> None:
    assert isinstance(ToneTranscriber(), Transcriber)
    assert isinstance(StreamingToneTranscriber(), StreamingTranscriber)
    assert not isinstance(ToneTranscriber(), StreamingTranscriber)
    assert isinstance(EchoChat(), ChatModel)
    assert isinstance(BeepSynthesizer(), Synthesizer)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_session(extra: int = 0, streaming: bool = False, **config: object
                 ) -> tuple[RealtimeSession, Clock, ToneTranscriber, EchoChat]:
    transcriber = StreamingToneTranscriber() if streaming else ToneTranscriber()
    chat, clock = EchoChat(extra), Clock()
    engine = Engine("doubles", transcriber, chat, BeepSynthesizer())
    settings = SessionConfig(tick_interval_s=None, **config)  # type: ignore[arg-type]
    vad = energy_vad if settings.turn_detection is not None else None
    return RealtimeSession(engine, vad, settings, clock=clock), clock, transcriber, chat


def feed(session: RealtimeSession, clock: Clock, samples: np.ndarray, rate: int = RATE, step_s: float = 0.1,
         patience_s: float = 30.0) -> None:
    """Stream in real time (fake clock), letting the worker catch up after every chunk."""
    size = int(step_s * rate)
    for start in range(0, len(samples), size):
        chunk = samples[start : start + size]
        clock.now += len(chunk) / rate
        session.append_audio(chunk, rate)
        assert session.wait_idle(patience_s)


def drain(session: RealtimeSession) -> list[ev.Output]:
    outputs = []
    while (output := session.next_output(timeout=0.01)) is not None:
        outputs.append(output)
    return outputs


def types(outputs: list[ev.Output]) -> list[str]:
    return [output.openai_type for output in outputs]


def test_spoken_turn_gets_a_committed_speculative_answer() -> None:
    session, clock, transcriber, _chat = make_session()
    with session:
        feed(session, clock, np.concatenate([silence(0.5), tone(1.0), silence(0.8)]))
        outputs = drain(session)
        assert types(outputs)[:5] == [
            "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed", "conversation.item.added",
            "conversation.item.input_audio_transcription.completed"]
        assert outputs[0] == ev.SpeechStarted("item_1", 180)  # the 32 ms frame at 480 ms holds the onset; minus 300 ms
        assert ev.InputTranscriptionCompleted("item_1", "tone 10") in outputs
        assert types(outputs).count("response.created") == 1
        transcript = "".join(o.delta for o in outputs if isinstance(o, ev.OutputTranscriptDelta))
        assert transcript == "You said tone 10."
        audio = [o for o in outputs if isinstance(o, ev.OutputAudioDelta)]
        assert sum(len(o.samples) for o in audio) == 4 * 800 and {o.sample_rate for o in audio} == {8000}
        assert outputs[-1] == ev.ResponseDone("resp_2", "item_3", "completed", "stop")
        assert session.metrics.committed == 1 and session.metrics.started == 1
        assert len(transcriber.calls) == 1  # transcribed once, speculatively
        assert session.phase is Phase.SPEAKING
        clock.now += 0.5
        session.tick()
        assert session.phase is Phase.LISTENING
        assert [(m.role, m.content) for m in session.context.messages()] == [
            ("user", "tone 10"), ("assistant", "You said tone 10.")]
        stats = session.context_stats()
        assert stats.audio_turns == 2 and stats.compression_ratio > 1
        summary = session.stats()
        assert summary["speculative_committed"] == 1 and summary["commit_rate"] == 1.0
        assert summary["compression_ratio"] == stats.compression_ratio and summary["interruptions"] == 0


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("chunk_s", [0.01, 0.032, 0.2337])
def test_chunking_of_the_input_does_not_change_the_conversation(chunk_s: float, streaming: bool) -> None:
    """Streaming in any append size gives the same turns, transcripts and replies (at real-time pace), whether
    the turns are recognised while spoken or at their end."""
    audio = np.concatenate([silence(0.4), tone(0.7), silence(0.3), tone(0.4), silence(0.9), tone(0.5), silence(0.8)])
    session, clock, transcriber, _chat = make_session(streaming=streaming)
    with session:
        feed(session, clock, audio, step_s=chunk_s)
        outputs = drain(session)
    kept = (ev.SpeechStarted, ev.SpeechStopped, ev.InputTranscriptionCompleted, ev.OutputTranscriptDelta)
    assert [o for o in outputs if isinstance(o, kept)] == [
        ev.SpeechStarted("item_1", 384 - 300),  # 32 ms frames: the onset at 400 ms falls in the frame at 384
        ev.SpeechStopped("item_1", 1824 + 512),  # last speech frame ends at 1824; 16 frames of silence
        ev.InputTranscriptionCompleted("item_1", "tone 11"),
        ev.OutputTranscriptDelta("resp_4", "item_5", "You said tone 11."),
        ev.SpeechStarted("item_6", 2688 - 300),
        ev.SpeechStopped("item_6", 3200 + 512),
        ev.InputTranscriptionCompleted("item_6", "tone 5"),
        ev.OutputTranscriptDelta("resp_7", "item_8", "You said tone 5."),
    ]
    # a speculation discarded at the pause: three clips recognised, by the turns' streams or in one pass each
    if isinstance(transcriber, StreamingToneTranscriber):
        assert transcriber.calls == [] and [len(s.finals) for s in transcriber.streams] == [2, 1]
    else:
        assert len(transcriber.calls) == 3


def test_the_turn_is_recognised_while_it_is_spoken() -> None:
    """The engine hears the turn as it comes: its stream has made updates before the speech stops, and the
    transcript of the speculation's clip (and of the committed item) comes from the stream, not a one-pass run."""
    session, clock, transcriber, _chat = make_session(streaming=True)
    assert isinstance(transcriber, StreamingToneTranscriber)
    with session:
        feed(session, clock, np.concatenate([silence(0.5), tone(2.0)]))
        assert "input_audio_buffer.speech_stopped" not in types(drain(session))
        assert len(transcriber.streams) == 1 and session.stats()["listen_updates"] == transcriber.streams[0].updates
        assert transcriber.streams[0].updates >= 3  # every 0.5 s of the 2.3 s heard so far
        feed(session, clock, silence(0.8))
        outputs = drain(session)
    stream = transcriber.streams[0]
    assert transcriber.calls == [] and stream.finals
    assert ev.InputTranscriptionCompleted("item_1", "tone 20") in outputs
    assert [o.delta for o in outputs if isinstance(o, ev.OutputTranscriptDelta)] == ["You said tone 20."]
    assert session.metrics.committed == 1


def test_a_resumed_turn_is_heard_by_the_same_stream() -> None:
    session, clock, transcriber, _chat = make_session(streaming=True)
    assert isinstance(transcriber, StreamingToneTranscriber)
    with session:
        feed(session, clock, np.concatenate([tone(0.6), silence(0.3), tone(0.6), silence(0.8)]))
        outputs = drain(session)
    assert session.metrics.discarded == 1 and session.metrics.committed == 1
    assert len(transcriber.streams) == 1 and transcriber.calls == []
    first, second = transcriber.streams[0].finals  # the discarded speculation's clip, then the whole turn's
    assert first < second
    assert ev.InputTranscriptionCompleted("item_1", "tone 12") in outputs


@pytest.mark.parametrize("pause_ms", [64, 100_000])
def test_no_hypothesis_starts_while_the_speaker_pauses(pause_ms: int) -> None:
    """An update due in a pause waits for more speech (the turn may be ending: it would compete with the final
    pass on a small machine); with the rule off (a pause longer than any) it runs in the pause."""
    session, clock, transcriber, _chat = make_session(streaming=True, listen_pause_ms=pause_ms)
    assert isinstance(transcriber, StreamingToneTranscriber)
    with session:
        feed(session, clock, np.concatenate([silence(0.5), tone(0.9), silence(0.45), tone(0.6), silence(0.8)]),
             step_s=0.032)
        outputs = drain(session)
    start_ms = next(o.audio_start_ms for o in outputs if isinstance(o, ev.SpeechStarted))
    at_ms = [start_ms + 1000 * count / RATE for count in transcriber.streams[0].heard_at_update]
    in_pause = [t for t in at_ms if 1400 + 64 + 2 * 32 < t < 1850]
    assert (in_pause == []) == (pause_ms == 64), at_ms
    assert ev.InputTranscriptionCompleted("item_1", "tone 15") in outputs


def test_the_chat_model_reads_the_settled_words_ahead_of_the_reply() -> None:
    """While a turn is spoken, a chat model that can read ahead gets the conversation so far plus the turn's
    words heard so far each time they grow (not while the speaker pauses), in the form the reply will read it."""
    transcriber, chat, clock = StreamingToneTranscriber(), ReadingEchoChat(), Clock()
    engine = Engine("doubles", transcriber, chat, BeepSynthesizer())
    session = RealtimeSession(engine, energy_vad, SessionConfig(tick_interval_s=None), clock=clock)
    with session:
        feed(session, clock, np.concatenate([silence(0.5), tone(1.6), silence(0.8)]), step_s=0.032)
        first = list(chat.prepared)
        feed(session, clock, np.concatenate([tone(1.2), silence(0.8)]), step_s=0.032)
    assert len(first) >= 2 and all(len(p) == 1 and p[0].role == "user" for p in first)
    words = [p[-1].content for p in first]
    assert words == sorted(set(words), key=words.index) and words[-1].startswith("tone ")  # grew, no repeats
    later = chat.prepared[len(first):]
    assert chat.seen[1][0] == ChatMessage("user", "tone 16")  # the first turn as the reply read it: as text
    assert later and all(p[:2] == chat.seen[1][:2] for p in later)


def test_listening_can_be_turned_off() -> None:
    session, clock, transcriber, _chat = make_session(streaming=True, listen=False)
    assert isinstance(transcriber, StreamingToneTranscriber)
    with session:
        feed(session, clock, np.concatenate([silence(0.5), tone(1.0), silence(0.8)]))
        outputs = drain(session)
    assert transcriber.streams == [] and len(transcriber.calls) == 1
    assert ev.InputTranscriptionCompleted("item_1", "tone 10") in outputs


def test_pause_shorter_than_the_silence_discards_and_restarts() -> None:
    session, clock, transcriber, _chat = make_session()
    with session:
        feed(session, clock, np.concatenate([tone(0.6), silence(0.3), tone(0.6), silence(0.8)]))
        outputs = drain(session)
        assert types(outputs).count("input_audio_buffer.speech_started") == 1
        assert types(outputs).count("response.created") == 1
        metrics = session.metrics
        assert (metrics.started, metrics.committed, metrics.discarded) == (2, 1, 1)
        assert metrics.commit_rate == 0.5
        assert ev.InputTranscriptionCompleted("item_1", "tone 12") in outputs  # the whole turn
        assert [o.delta for o in outputs if isinstance(o, ev.OutputTranscriptDelta)] == ["You said tone 12."]
        assert len(transcriber.calls) == 2


@pytest.mark.parametrize(("engine_ms", "detection", "started"), [
    (200, TurnDetectionConfig(), 1),  # the common default: a 150 ms pause is no tentative end
    (100, TurnDetectionConfig(), 2),  # an engine whose wasted speculation is cheap starts one at the pause
    (100, TurnDetectionConfig(speculative_silence_ms=200), 1),  # the client's own value wins
])
def test_the_engine_sets_how_soon_a_pause_speculates(engine_ms: int, detection: TurnDetectionConfig,
                                                      started: int) -> None:
    engine = Engine("doubles", ToneTranscriber(), EchoChat(), BeepSynthesizer(), speculative_silence_ms=engine_ms)
    clock = Clock()
    config = SessionConfig(tick_interval_s=None, turn_detection=detection)
    with RealtimeSession(engine, energy_vad, config, clock=clock) as session:
        feed(session, clock, np.concatenate([tone(0.6), silence(0.15), tone(0.6), silence(0.8)]), step_s=0.02)
        outputs = drain(session)
        assert types(outputs).count("response.created") == 1
        assert (session.metrics.started, session.metrics.committed) == (started, 1)


@pytest.mark.parametrize("streaming", [False, True])
def test_barge_in_truncates_the_assistant_turn_to_what_was_played(streaming: bool) -> None:
    session, clock, _transcriber, chat = make_session(extra=20, streaming=streaming)  # 24 words: 2.4 s of speech
    with session:
        feed(session, clock, np.concatenate([tone(0.5), silence(0.6)]))
        assert session.phase is Phase.SPEAKING
        feed(session, clock, silence(0.5))
        feed(session, clock, tone(0.3))  # the user talks over the reply
        outputs = drain(session)
        truncated = [o for o in outputs if isinstance(o, ev.ItemTruncated)]
        assert len(truncated) == 1 and 500 <= truncated[0].audio_end_ms <= 1100
        assert session.phase is Phase.INTERRUPTED
        assistant = [m.content for m in session.context.messages() if m.role == "assistant"]
        assert len(assistant) == 1
        full = "You said tone 5. " + " ".join(f"word{i}" for i in range(20))
        assert full.startswith(assistant[0]) and len(assistant[0].split()) < len(full.split())
        feed(session, clock, silence(0.8))
        answered = [o for o in drain(session) if isinstance(o, ev.OutputTranscriptDelta)]
        assert answered and answered[0].delta.startswith("You said tone 3")
        assert chat.seen[-1][-2].content == assistant[0]  # the truncated turn is what the model sees


def test_manual_turns_text_modality_and_resampled_input() -> None:
    session, clock, transcriber, _chat = make_session(turn_detection=None, modalities=("text",))
    with session:
        feed(session, clock, np.concatenate([silence(0.2, 24000), tone(0.5, 24000)]), rate=24000)
        session.send(ev.InputAudioCommit())
        session.send(ev.ResponseCreate())
        assert session.wait_idle()
        outputs = drain(session)
        assert abs(transcriber.calls[0] - 0.7) < 0.033  # 24 kHz in, 16 kHz out, all of it (last frame padded)
        text = "".join(o.delta for o in outputs if isinstance(o, ev.OutputTextDelta))
        assert text == "You said tone 5."
        assert not any(isinstance(o, ev.OutputAudioDelta) for o in outputs)
        session.send(ev.TextInput("hello"))
        session.send(ev.ResponseCreate())
        assert session.wait_idle()
        assert [o.text for o in drain(session) if isinstance(o, ev.OutputTextDone)] == ["You said hello."]


def test_noise_that_transcribes_to_nothing_gets_no_answer() -> None:
    class Deaf(ToneTranscriber):
        def transcribe(self, audio: Audio, language: str | None = None) -> Transcript:
            return Transcript("")

    chat = EchoChat()
    engine = Engine("doubles", Deaf(), chat, BeepSynthesizer())
    clock = Clock()
    with RealtimeSession(engine, energy_vad, SessionConfig(tick_interval_s=None), clock=clock) as session:
        feed(session, clock, np.concatenate([tone(0.3), silence(0.8)]))
        outputs = drain(session)
        assert ev.InputTranscriptionCompleted("item_1", "") in outputs
        assert chat.seen == []
        assert not any(isinstance(o, ev.OutputAudioDelta) for o in outputs)
        assert [o.status for o in outputs if isinstance(o, ev.ResponseDone)] == ["completed"]
        assert session.context.messages() == []
        assert session.phase is Phase.LISTENING


def test_update_changes_prompt_voice_and_turn_detection() -> None:
    session, clock, _transcriber, chat = make_session()
    with session:
        config = session.update(system_prompt="Answer in French.", turn_detection=None, modalities=("text",))
        assert config.turn_detection is None and session.context.system_prompt == "Answer in French."
        feed(session, clock, tone(0.5))
        assert drain(session) == []  # no VAD: nothing happens until a commit
        session.send(ev.InputAudioCommit())
        session.send(ev.ResponseCreate())
        assert session.wait_idle()
        assert chat.seen[-1][0] == ChatMessage("system", "Answer in French.")
        with pytest.raises(StepAudioError, match="sample rate"):
            session.update(sample_rate=8000)
        session.send(ev.TextInput("hi"))
        session.send(ev.ResponseCreate(instructions="Be terse."))
        assert session.wait_idle()
        assert [m.content for m in chat.seen[-1] if m.role == "system"] == ["Be terse."]
        assert session.context.system_prompt == "Answer in French."


def test_failing_transcriber_reports_the_item_and_keeps_going() -> None:
    class Failing(ToneTranscriber):
        def transcribe(self, audio: Audio, language: str | None = None) -> Transcript:
            raise RuntimeError("no ears")

    engine = Engine("doubles", Failing(), EchoChat(), BeepSynthesizer())
    config = SessionConfig(turn_detection=None, tick_interval_s=None, modalities=("text",))
    with RealtimeSession(engine, None, config) as session:
        session.append_audio(tone(0.3))
        session.send(ev.InputAudioCommit())
        assert session.wait_idle()
        assert ev.InputTranscriptionFailed("item_1", "RuntimeError: no ears") in drain(session)
        session.send(ev.TextInput("still here"))
        session.send(ev.ResponseCreate())
        assert session.wait_idle()
        assert [o.text for o in drain(session) if isinstance(o, ev.OutputTextDone)] == ["You said still here."]


def test_tool_call_through_the_session() -> None:
    class ToolChat:
        def respond(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None = None,
                    options: GenerationOptions | None = None,
                    cancel: CancelToken | None = None) -> Iterator[ChatDelta]:
            assert tools is not None and tools[0].name == "clock"
            if messages[-1].role == "tool":
                yield ChatDelta(text=f"It is {messages[-1].content}.")
                yield ChatDelta(finish_reason="stop")
            else:
                yield ChatDelta(tool_calls=(ToolCall("call_9", "clock", "{}"),), finish_reason="tool_calls")

    engine = Engine("doubles", ToneTranscriber(), ToolChat(), BeepSynthesizer())
    config = SessionConfig(turn_detection=None, tick_interval_s=None, modalities=("text",),
                           tools=(ToolSpec("clock", "the time"),))
    with RealtimeSession(engine, None, config) as session:
        session.send(ev.TextInput("what time is it?"))
        session.send(ev.ResponseCreate())
        assert session.wait_idle()
        calls = [o for o in drain(session) if isinstance(o, ev.FunctionCallArgumentsDone)]
        assert [(c.call_id, c.name) for c in calls] == [("call_9", "clock")]
        session.send(ev.FunctionCallOutput("call_9", "noon"))
        session.send(ev.ResponseCreate())
        assert session.wait_idle()
        assert [o.text for o in drain(session) if isinstance(o, ev.OutputTextDone)] == ["It is noon."]
        roles = [(m.role, m.content, len(m.tool_calls)) for m in session.context.messages()]
        assert roles == [("user", "what time is it?", 0), ("assistant", "", 1), ("tool", "noon", 0),
                         ("assistant", "It is noon.", 0)]


def test_engine_without_a_transcriber_reports_spoken_items() -> None:
    engine = Engine("no-asr", None, EchoChat(), BeepSynthesizer())
    with RealtimeSession(engine, None, SessionConfig(turn_detection=None, tick_interval_s=None)) as session:
        session.append_audio(tone(0.3))
        session.send(ev.InputAudioCommit())
        assert session.wait_idle()
        failed = [o for o in drain(session) if isinstance(o, ev.InputTranscriptionFailed)]
        assert len(failed) == 1 and "no speech recognizer" in failed[0].message


def test_engine_without_a_synthesizer_answers_in_text() -> None:
    engine = Engine("text-only", ToneTranscriber(), EchoChat(), None)
    with RealtimeSession(engine, None, SessionConfig(turn_detection=None, tick_interval_s=None)) as session:
        session.send(ev.TextInput("hi"))
        session.send(ev.ResponseCreate(modalities=("audio", "text")))
        assert session.wait_idle()
        assert [o.text for o in drain(session) if isinstance(o, ev.OutputTextDone)] == ["You said hi."]


def test_clear_resets_a_stateful_vad() -> None:
    class CountingVad:
        resets = 0

        def __call__(self, frame: np.ndarray) -> float:
            return energy_vad(frame)

        def reset(self) -> None:
            self.resets += 1

    vad = CountingVad()
    engine = Engine("doubles", ToneTranscriber(), EchoChat(), BeepSynthesizer())
    with RealtimeSession(engine, vad, SessionConfig(tick_interval_s=None)) as session:
        session.append_audio(tone(0.2))
        session.send(ev.InputAudioClear())
        assert vad.resets == 1
        assert [o.openai_type for o in drain(session)][-1] == "input_audio_buffer.cleared"


def test_session_errors() -> None:
    engine = Engine("doubles", ToneTranscriber(), EchoChat(), BeepSynthesizer())
    with pytest.raises(StepAudioError, match="VAD"):
        RealtimeSession(engine, None, SessionConfig(tick_interval_s=None))
    with pytest.raises(StepAudioError, match="whole number"):
        SessionConfig(sample_rate=44100, frame_ms=10 + 1)
    session = RealtimeSession(engine, energy_vad, SessionConfig(tick_interval_s=None))
    with pytest.raises(AudioError):
        session.append_audio(np.array([np.nan], np.float32))
    session.close()
    with pytest.raises(StepAudioError, match="closed"):
        session.append_audio(silence(0.1))


def test_failing_chat_reports_a_failed_response() -> None:
    class Broken:
        def respond(self, *args: object, **kwargs: object) -> Iterator[ChatDelta]:
            raise RuntimeError("model exploded")

    engine = Engine("broken", ToneTranscriber(), Broken(), BeepSynthesizer())
    with RealtimeSession(engine, None, SessionConfig(turn_detection=None, tick_interval_s=None)) as session:
        session.send(ev.TextInput("hi"))
        session.send(ev.ResponseCreate())
        assert session.wait_idle()
        outputs = drain(session)
        assert any(isinstance(o, ev.ErrorOutput) and "model exploded" in o.message for o in outputs)
        assert [o.status for o in outputs if isinstance(o, ev.ResponseDone)] == ["failed"]
        assert session.phase is Phase.LISTENING


def test_callback_sink_and_ticker_thread() -> None:
    engine = Engine("doubles", ToneTranscriber(), EchoChat(), BeepSynthesizer())
    received: list[ev.Output] = []
    done = threading.Event()

    def sink(output: ev.Output) -> None:
        received.append(output)
        if isinstance(output, ev.ResponseDone):
            done.set()

    config = SessionConfig(turn_detection=None, tick_interval_s=0.01)
    with RealtimeSession(engine, None, config, on_output=sink) as session:
        session.send(ev.TextInput("hi"))
        session.send(ev.ResponseCreate())
        assert done.wait(10)
        for _ in range(200):  # the ticker ends playback of 0.3 s of audio in real time
            if session.phase is Phase.LISTENING:
                break
            threading.Event().wait(0.01)
        assert session.phase is Phase.LISTENING


def test_concurrent_callers_neither_deadlock_nor_fail() -> None:
    engine = Engine("doubles", ToneTranscriber(), EchoChat(extra=10), BeepSynthesizer())
    errors: list[BaseException] = []
    outputs: list[ev.Output] = []
    session = RealtimeSession(engine, energy_vad, SessionConfig(tick_interval_s=0.005), on_output=outputs.append)

    def talk(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(60):
                choice = rng.integers(6)
                if choice < 3:
                    session.append_audio(tone(0.05) if rng.random() < 0.5 else silence(0.1))
                elif choice == 3:
                    session.send(ev.ResponseCancel())
                elif choice == 4:
                    session.send(ev.TextInput("hey"))
                    session.send(ev.ResponseCreate())
                else:
                    session.send(ev.InputAudioClear())
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=talk, args=(seed,)) for seed in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not any(thread.is_alive() for thread in threads)
    assert session.wait_idle(20)
    session.close()
    assert errors == []
    assert not any(isinstance(o, ev.ErrorOutput) and o.code == "server_error" for o in outputs)
    done = [o.response_id for o in outputs if isinstance(o, ev.ResponseDone)]
    assert len(done) == len(set(done))


def test_asyncio_sink() -> None:
    async def main() -> ev.Output:
        queue: asyncio.Queue[ev.Output] = asyncio.Queue()
        sink = asyncio_sink(asyncio.get_running_loop(), queue)
        threading.Thread(target=sink, args=(ev.BufferCleared(),)).start()
        return await asyncio.wait_for(queue.get(), 5)

    assert asyncio.run(main()) == ev.BufferCleared()


class CountingTranscriber:
    """The lite engine's transcriber, counting its one-pass runs."""

    def __init__(self, inner: StreamingTranscriber) -> None:
        self.inner = inner
        self.calls = 0

    def transcribe(self, audio: Audio, language: str | None = None) -> Transcript:
        self.calls += 1
        return self.inner.transcribe(audio, language)

    def listen(self, sample_rate: int, language: str | None = None) -> object:
        return self.inner.listen(sample_rate, language)


def test_a_recorded_turn_is_recognised_by_whisper_while_spoken(lite_engine: Engine) -> None:
    """A LibriVox sentence spoken into a session (Silero VAD) with the lite engine's Whisper: hypotheses were made
    while it was spoken, before the speech stopped; the item's words come from the stream (no one-pass run) and
    are the recording's words; the reply starts from them."""
    from stepaudio.eval.bench.lite import error_rate

    recording = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0930.wav")
    if not recording.is_file():
        pytest.skip("real recordings absent: apt-get install pocketsphinx-testdata")
    assert isinstance(lite_engine.transcriber, StreamingTranscriber)
    transcriber = CountingTranscriber(lite_engine.transcriber)
    engine = Engine("lite-asr", transcriber, EchoChat(), BeepSynthesizer())  # type: ignore[arg-type]
    vad = WindowedVad(pytest.importorskip("faster_whisper.vad").get_vad_model())
    speech = load_audio(recording, sample_rate=RATE).samples
    clock = Clock()
    with RealtimeSession(engine, vad, SessionConfig(tick_interval_s=None, language="en"), clock=clock) as session:
        feed(session, clock, np.concatenate([silence(0.3), speech]), patience_s=120)
        before_stop = session.stats()["listen_updates"]
        assert "input_audio_buffer.speech_stopped" not in types(drain(session)) and before_stop >= 2
        feed(session, clock, silence(1.0), patience_s=120)
        outputs = drain(session)
    heard = [o.transcript for o in outputs if isinstance(o, ev.InputTranscriptionCompleted)]
    assert len(heard) == 1 and transcriber.calls == 0
    assert error_rate([("he might even have been made amiable himself", heard[0])]) == 0, heard
    spoken = [o.delta for o in outputs if isinstance(o, ev.OutputTranscriptDelta)]  # the first piece cut at 48
    assert " ".join(spoken) == f"You said {heard[0]}." and len(spoken[0]) <= 48


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("stepaudio.engines.lite") is None, reason="no lite engine")
def test_spoken_turn_with_the_lite_engine() -> None:
    from stepaudio.engines.registry import create_engine

    engine = create_engine("lite")
    assert engine.synthesizer is not None
    chunks = list(engine.synthesizer.synthesize("What is the capital of France?"))
    question = Audio(np.concatenate([c.samples for c in chunks]), chunks[0].sample_rate).resampled(RATE)
    vad_module = pytest.importorskip("faster_whisper.vad")
    vad = WindowedVad(vad_module.get_vad_model())
    clock = Clock()
    session = RealtimeSession(engine, vad, SessionConfig(tick_interval_s=None), clock=clock)
    with session:
        feed(session, clock, np.concatenate([silence(0.3), question.samples, silence(1.0)]), patience_s=600)
        outputs = drain(session)
        transcripts = [o.transcript for o in outputs if isinstance(o, ev.InputTranscriptionCompleted)]
        assert transcripts and "france" in transcripts[-1].lower()
        assert any(isinstance(o, ev.OutputAudioDelta) for o in outputs)
        assert [o.status for o in outputs if isinstance(o, ev.ResponseDone)][-1] == "completed"


def test_step_chat_hears_a_committed_turn_once(step_stack: Path, chat_prompts: list[list[int]]) -> None:
    """A spoken item reaches Step-Audio-Chat as audio tokens in one pass; without a transcript asked for it stays
    in the context as audio, so the next turn's prompt carries it again (and no ASR pass is made)."""
    from stepaudio.audio.io import load_audio
    from stepaudio.engines.registry import create_engine

    engine = create_engine("step", model_path=str(step_stack), seed=0, chat_max_tokens=4)
    audio = load_audio(step_stack / "speakers" / "Tingting_prompt.wav")
    config = SessionConfig(turn_detection=None, tick_interval_s=None, modalities=("text",), transcribe_input=False)
    with RealtimeSession(engine, None, config) as session:
        session.append_audio(audio.samples, audio.sample_rate)
        session.send(ev.InputAudioCommit())
        session.send(ev.ResponseCreate())
        assert session.wait_idle(120)
        outputs = drain(session)
        assert [o.status for o in outputs if isinstance(o, ev.ResponseDone)] in (["completed"], ["incomplete"])
        assert not any(isinstance(o, ev.InputTranscriptionCompleted) for o in outputs)
        assert len(chat_prompts) == 1
        assert 80 <= sum(i >= 65536 for i in chat_prompts[0]) <= 85
        session.send(ev.TextInput("再说一遍"))
        session.send(ev.ResponseCreate())
        assert session.wait_idle(120)
    assert len(chat_prompts) == 2
    first, second = ([i for i in p if i >= 65536] for p in chat_prompts)
    assert second[: len(first)] == first  # (the random model's reply after it may hold audio ids too)


def test_step_chat_transcribes_after_the_reply_when_asked(step_stack: Path, chat_prompts: list[list[int]]) -> None:
    from stepaudio.audio.io import load_audio
    from stepaudio.engines.registry import create_engine

    engine = create_engine("step", model_path=str(step_stack), seed=0, chat_max_tokens=4)
    audio = load_audio(step_stack / "speakers" / "Tingting_prompt.wav")
    config = SessionConfig(turn_detection=None, tick_interval_s=None, modalities=("text",))
    with RealtimeSession(engine, None, config) as session:
        session.append_audio(audio.samples, audio.sample_rate)
        session.send(ev.InputAudioCommit())
        session.send(ev.ResponseCreate())
        assert session.wait_idle(120)
        outputs = drain(session)
    kinds = [type(o).__name__ for o in outputs]
    assert "InputTranscriptionCompleted" in kinds and kinds.index("InputTranscriptionCompleted") < kinds.index(
        "ResponseDone")
    assert len(chat_prompts) == 2  # the reply's pass and the transcript's, over the same audio tokens
    heard, again = ([i for i in p if i >= 65536] for p in chat_prompts)
    assert heard == again and 80 <= len(heard) <= 85


def test_step_chat_hears_the_turn_while_it_is_spoken(step_stack: Path, chat_prompts: list[list[int]]) -> None:
    """With turn detection, Step-Audio-Chat's audio tokens of the turn are made while it is spoken (vq02 steps
    before the speech stops); the tokens the reply's prompt carries are the offline tokens of the answered clip."""
    from stepaudio.engines.registry import create_engine
    from stepaudio.engines.step.chat import StepChat
    from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer

    engine = create_engine("step", model_path=str(step_stack), seed=0, chat_max_tokens=4)
    assert isinstance(engine.chat, StepChat)
    kept: list[tuple[Audio, str]] = []
    keep = engine.chat._keep
    engine.chat._keep = lambda audio, text: (kept.append((audio, text)), keep(audio, text))  # type: ignore[method-assign]
    speech = load_audio(step_stack / "speakers" / "Tingting_prompt.wav", sample_rate=RATE).samples
    # the prompt recording ends in a short quiet: a tentative end later than that keeps the reply until the
    # silence fed below
    config = SessionConfig(tick_interval_s=None, modalities=("text",), transcribe_input=False,
                           turn_detection=TurnDetectionConfig(speculative_silence_ms=300))
    clock = Clock()
    with RealtimeSession(engine, energy_vad, config, clock=clock) as session:
        feed(session, clock, np.concatenate([silence(0.3), speech]), patience_s=120)
        assert session.stats()["listen_updates"] > 0 and not kept  # tokenising, nothing answered yet
        feed(session, clock, silence(1.0), patience_s=120)
        outputs = drain(session)
    assert [o.status for o in outputs if isinstance(o, ev.ResponseDone)][-1] in ("completed", "incomplete")
    assert kept
    tokenizer = StepAudioTokenizer.from_pretrained(step_stack)
    clip, text = kept[-1]
    assert text == tokenizer.audio_text(clip.samples, RATE, trim=False)
    assert [i for i in chat_prompts[-1] if i >= 65536] == tokenizer.lm_ids(clip.samples, RATE)
