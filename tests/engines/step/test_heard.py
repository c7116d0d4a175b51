"""Step-Audio-Chat hears a turn while it is spoken: the audio tokens streamed during the turn (tiny random stack)
are the tokens the offline tokenizer gives the same clip, for the whole turn and for a speculation's shorter
clip, also when a louder sample restarts the vq02 stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stepaudio.audio.io import Audio, load_audio
from stepaudio.engines.base import ListeningChat
from stepaudio.engines.step.heard import StepHeard
from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer

RATE = 16000


@pytest.fixture(scope="module")
def tokenizer(step_stack: Path) -> StepAudioTokenizer:
    return StepAudioTokenizer.from_pretrained(step_stack)


@pytest.fixture(scope="module")
def speech(step_stack: Path) -> np.ndarray:
    """The tiny stack's prompt (2 s), its loudest sample moved into its first second: a clip whose peak lies in
    the last few hundred ms the stream has not run yet is tokenised in one pass (tested below)."""
    samples = load_audio(step_stack / "speakers" / "Tingting_prompt.wav", sample_rate=RATE).samples.copy()
    samples[RATE // 2] = 1.1 * np.max(np.abs(samples))
    return samples


def _heard(tokenizer: StepAudioTokenizer, samples: np.ndarray) -> tuple[StepHeard, dict[int, str]]:
    kept: dict[int, str] = {}
    stream = StepHeard(lambda: tokenizer, RATE, lambda audio, text: kept.__setitem__(audio.samples.size, text))
    for start in range(0, samples.size, 512):  # 32 ms frames, as a session pushes them
        stream.push(samples[start : start + 512])
        stream.update()
    return stream, kept


def test_streamed_tokens_equal_the_offline_tokens(tokenizer: StepAudioTokenizer, speech: np.ndarray) -> None:
    stream, kept = _heard(tokenizer, speech)
    assert stream._processed >= speech.size - RATE // 2  # the vq02 steps ran while the turn was spoken
    shorter = speech.size - 1600  # a speculation's clip: it may end a frame or three before the newest sample
    for size in (shorter, speech.size):
        stream.hear(Audio(speech[:size], RATE))
        assert kept[size] == tokenizer.audio_text(speech[:size], RATE, trim=False)
    assert stream.served == 2  # both from the stream, not re-tokenised in one pass


def test_a_louder_sample_restarts_the_stream_and_the_tokens_stay_exact(tokenizer: StepAudioTokenizer,
                                                                        speech: np.ndarray) -> None:
    samples = speech.copy()
    samples[samples.size // 2] = 1.5 * np.max(np.abs(speech))  # louder than anything before it
    stream, kept = _heard(tokenizer, samples)
    assert stream.restarts >= 1
    stream.hear(Audio(samples, RATE))
    assert kept[samples.size] == tokenizer.audio_text(samples, RATE, trim=False) and stream.served == 1


def test_a_clip_the_stream_cannot_serve_is_tokenised_in_one_pass(tokenizer: StepAudioTokenizer,
                                                                 speech: np.ndarray) -> None:
    stream, kept = _heard(tokenizer, speech)
    early = stream._processed - 4000  # the stream ran past this clip's end
    stream.hear(Audio(speech[:early], RATE))
    assert kept[early] == tokenizer.audio_text(speech[:early], RATE, trim=False) and stream.served == 0
    late_peak = speech.copy()
    late_peak[-100] = 1.0  # louder than all the stream has scaled by: the whole clip changes
    stream, kept = _heard(tokenizer, late_peak)
    stream.hear(Audio(late_peak, RATE))
    assert kept[late_peak.size] == tokenizer.audio_text(late_peak, RATE, trim=False) and stream.served == 0


def test_the_step_chat_listens_and_reads_the_heard_tokens(step_stack: Path, speech: np.ndarray,
                                                          chat_prompts: list[list[int]],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """What `hear` made is what the chat prompt carries for that clip object (no second tokenisation)."""
    from stepaudio.engines.base import ChatMessage, GenerationOptions
    from stepaudio.engines.registry import create_engine

    engine = create_engine("step", model_path=str(step_stack), seed=0, chat_max_tokens=2)
    assert engine.abilities.hears_audio and isinstance(engine.chat, ListeningChat)
    stream = engine.chat.listen(RATE)
    assert stream is not None
    for start in range(0, speech.size, 512):
        stream.push(speech[start : start + 512])
        stream.update()
    clip = Audio(speech.copy(), RATE)
    stream.hear(clip)
    offline = StepAudioTokenizer.from_pretrained(step_stack).lm_ids(speech, RATE)
    monkeypatch.setattr(StepAudioTokenizer, "audio_text", lambda *a, **k: pytest.fail("tokenised again"))
    list(engine.chat.respond([ChatMessage("user", "", audio=clip)], options=GenerationOptions(max_new_tokens=2)))
    assert [i for i in chat_prompts[-1] if i >= 65536] == offline
