"""A realtime session over the step2 engine with manual commits: the user's buffered speech reaches the model as
audio features through the turn service, and the reply streams back as text and 24 kHz audio; a second turn
carries the first in its history."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stepaudio.audio_encoder.frontend import mel_frames, placeholder_count
from stepaudio.engines.base import Engine, GenerationOptions
from stepaudio.engines.registry import create_engine
from stepaudio.engines.step2.model import Step2Model
from stepaudio.realtime import events as ev
from stepaudio.realtime.session import RealtimeSession, SessionConfig
from stepaudio.testing.tiny_stack import speech_like
from stepaudio.testing.tiny_step2 import PromptSpy, write_tiny_step2_stack


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    stack: Path = write_tiny_step2_stack(tmp_path_factory.mktemp("step2"))
    return create_engine("step2", model_path=str(stack), seed=0, max_segment_tokens=40)


def _drain(session: RealtimeSession) -> list[ev.Output]:
    outputs = []
    while (output := session.next_output(timeout=0.01)) is not None:
        outputs.append(output)
    return outputs


def test_committed_speech_is_heard_as_audio_features(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = PromptSpy()
    monkeypatch.setattr(Step2Model, "prompt_embeds", spy.wrap(Step2Model.prompt_embeds))
    config = SessionConfig(turn_detection=None, tick_interval_s=None, transcribe_input=False,
                           generation=GenerationOptions(max_new_tokens=8, temperature=0.3, seed=0))
    with RealtimeSession(engine, None, config) as session:
        session.append_audio(speech_like(1.2, 16000, 4), 16000)
        session.send(ev.InputAudioCommit())
        session.send(ev.ResponseCreate())
        assert session.wait_idle(120)
        first = _drain(session)
        # the reply is the model's own speech: the response ends once it has been played out
        played = sum(o.samples.size / o.sample_rate for o in first if isinstance(o, ev.OutputAudioDelta))
        time.sleep(played + 0.05)
        session.tick()
        session.append_audio(speech_like(0.8, 16000, 5), 16000)
        session.send(ev.InputAudioCommit())
        session.send(ev.ResponseCreate())
        assert session.wait_idle(120)
        second = _drain(session)
    heard = [(ids, [m.shape[1] for m in mels]) for ids, mels in spy.calls if mels]
    assert len(heard) == 2, (first, second)
    (_, first_frames), (ids, both_frames) = heard
    # the buffer is cut in whole VAD frames (32 ms): the first question may gain up to one frame of padding
    assert len(first_frames) == 1 and mel_frames(19200) <= first_frames[0] <= mel_frames(19200 + 512)
    # the second turn: both spoken questions as audio (no transcripts asked for), the newest last
    assert both_frames == [first_frames[0], mel_frames(12800)]
    assert ids.count(spy.patch_ids[0]) == placeholder_count(first_frames[0]) + placeholder_count(mel_frames(12800))
    for outputs in (first, second):
        done = [o for o in outputs if isinstance(o, ev.ResponseDone)]
        assert len(done) == 1 and (done[0].status, done[0].reason) in (("completed", None), ("incomplete", "length"))
    outputs = first + second
    text = "".join(o.delta for o in outputs if isinstance(o, ev.OutputTranscriptDelta))
    audio = [o for o in outputs if isinstance(o, ev.OutputAudioDelta)]
    assert text.strip() and audio and all(a.sample_rate == 24000 and a.samples.size for a in audio)
