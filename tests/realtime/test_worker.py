"""Generation jobs: transcripts cached per span, sentence-by-sentence speech, cancellation between steps."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from stepaudio.audio.io import Audio
from stepaudio.engines.base import (
    Abilities,
    AudioChunk,
    CancelToken,
    ChatMessage,
    Engine,
    SpeechInstructions,
    Voice,
)
from stepaudio.realtime import events as ev
from stepaudio.realtime.turn import Transcripts
from stepaudio.realtime.worker import SpeechSettings, run_generation, run_transcription
from stepaudio.testing.fakes import CountingTranscriber, ScriptedChat


class TwoChunkSynth:
    sample_rate = 100

    def __init__(self, cancel_after: int | None = None, token: CancelToken | None = None) -> None:
        self.sentences: list[str] = []
        self.cancel_after, self.token = cancel_after, token

    def voices(self) -> list[str]:
        return []

    def synthesize(self, text: str, voice: Voice | str | None = None,
                   instructions: SpeechInstructions | None = None,
                   cancel: CancelToken | None = None) -> Iterator[AudioChunk]:
        self.sentences.append(text)
        if self.token is not None and len(self.sentences) == self.cancel_after:
            self.token.cancel()
        yield AudioChunk(np.ones(10, np.float32), self.sample_rate)
        yield AudioChunk(np.ones(10, np.float32), self.sample_rate, is_last=True)


def command(*spans: ev.ItemSpan) -> ev.StartGeneration:
    return ev.StartGeneration("r", "a", spans, speculative=False)


def test_sentences_are_spoken_with_their_text_on_the_first_chunk() -> None:
    transcriber, synth = CountingTranscriber(), TwoChunkSynth()
    chat = ScriptedChat(["Hello the", "re. How are", " you?"])
    engine = Engine("t", transcriber, chat, synth)
    posted: list[ev.Event] = []
    audio = {"u": Audio(np.zeros(1600, np.float32), 16000)}
    run_generation(engine, Transcripts(transcriber), command(ev.ItemSpan("u", 0, 100)), [ChatMessage("system", "s")],
                   audio, SpeechSettings(), CancelToken(), posted.append)
    assert posted[0] == ev.InputTranscribed("u", 100, "heard 0.1 s")
    assert chat.seen[-1] == [ChatMessage("system", "s"), ChatMessage("user", "heard 0.1 s")]
    assert synth.sentences == ["Hello there.", "How are you?"]
    spoken = [(e.text, len(e.samples)) for e in posted if isinstance(e, ev.GenerationAudio)]
    assert spoken == [("Hello there.", 10), ("", 10), ("How are you?", 10), ("", 10)]
    assert posted[-1] == ev.GenerationDone("r", "stop")


def test_transcripts_are_made_once_per_clip() -> None:
    transcriber = CountingTranscriber()
    transcripts = Transcripts(transcriber)
    posted: list[ev.Event] = []
    clip, longer = Audio(np.zeros(3200, np.float32), 16000), Audio(np.zeros(4800, np.float32), 16000)
    run_transcription(transcripts, ev.ItemSpan("u", 0, 200), clip, posted.append)
    run_transcription(transcripts, ev.ItemSpan("u", 0, 200), clip, posted.append)
    run_transcription(transcripts, ev.ItemSpan("u", 0, 300), longer, posted.append)
    assert transcriber.calls == 2
    assert [(e.end_ms, e.text) for e in posted] == [(200, "heard 0.2 s"), (200, "heard 0.2 s"), (300, "heard 0.3 s")]


def test_an_engine_that_hears_gets_the_clip_and_its_transcript_only_when_asked() -> None:
    for transcribe in (False, True):
        transcriber, chat = CountingTranscriber(), ScriptedChat(["Hi."])
        engine = Engine("t", transcriber, chat, None, Abilities(hears_audio=True))
        posted: list[ev.Event] = []
        clip = Audio(np.zeros(1600, np.float32), 16000)
        run_generation(engine, Transcripts(transcriber), command(ev.ItemSpan("u", 0, 100)), [], {"u": clip},
                       SpeechSettings(transcribe=transcribe), CancelToken(), posted.append)
        assert chat.seen[-1][-1].audio is clip
        heard = [e for e in posted if isinstance(e, ev.InputTranscribed)]
        assert transcriber.calls == len(heard) == int(transcribe)
        kinds = [type(e).__name__ for e in posted]
        assert kinds[-1] == "GenerationDone" and kinds[0] == "GenerationText"  # any transcript after the reply


def test_cancel_stops_between_sentences_and_posts_no_done() -> None:
    token = CancelToken()
    synth = TwoChunkSynth(cancel_after=1, token=token)
    engine = Engine("t", CountingTranscriber(), ScriptedChat(["One sentence here. ", "Two sentences here. ", "Three."]),
                    synth)
    posted: list[ev.Event] = []
    run_generation(engine, Transcripts(None), command(), [], {}, SpeechSettings(), token, posted.append)
    assert synth.sentences == ["One sentence here."]
    assert not any(isinstance(e, ev.GenerationDone | ev.GenerationAudio) for e in posted)
