"""`stepaudio chat/asr/tts --engine step2` end to end on a tiny Step-Audio 2 release folder: a spoken question is
heard by the model as audio features and answered in text and 24 kHz speech."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepaudio.audio.io import load_audio, save_audio
from stepaudio.audio_encoder.frontend import mel_frames, placeholder_count
from stepaudio.cli.main import main
from stepaudio.engines.step2.model import Step2Model
from stepaudio.testing.tiny_stack import speech_like
from stepaudio.testing.tiny_step2 import PromptSpy, write_tiny_step2_stack

FAST = ["-O", "seed=0", "-O", "max_segment_tokens=40", "-O", "chat_max_tokens=8"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_step2_stack(tmp_path_factory.mktemp("step2"))


@pytest.fixture(scope="module")
def question(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_audio(tmp_path_factory.mktemp("q") / "question.wav", speech_like(1.5, 16000, seed=7), 16000)


def _step2(stack: Path) -> list[str]:
    return ["--engine", "step2", "--model-path", str(stack), *FAST]


def test_chat_hears_a_spoken_question_and_answers_it(stack: Path, question: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spy = PromptSpy()
    monkeypatch.setattr(Step2Model, "prompt_embeds", spy.wrap(Step2Model.prompt_embeds))
    reply = tmp_path / "reply.wav"
    assert main(["chat", str(question), "-o", str(reply), "--no-vad", "--no-warmup", "--max-new-tokens", "8",
                 *_step2(stack)]) == 0
    out = capsys.readouterr().out
    assert "reply: " in out and "TTS first audio" in out
    heard = [(ids, mels) for ids, mels in spy.calls if mels]
    assert len(heard) == 1 and heard[0][1][0].shape[1] == mel_frames(24000)
    assert spy.placeholders(spy.calls.index(heard[0])) == placeholder_count(mel_frames(24000))
    spoken = load_audio(reply)
    assert spoken.sample_rate == 24000 and spoken.duration > 0.1


def test_asr_and_tts(stack: Path, question: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["asr", str(question), *_step2(stack)]) == 0
    assert str(question) in capsys.readouterr().out
    out = tmp_path / "hello.wav"
    assert main(["tts", "Hello there.", "--voice", "default_male", "-o", str(out), *_step2(stack)]) == 0
    speech = load_audio(out)
    assert speech.sample_rate == 24000 and speech.duration > 0.05
    assert main(["tts", "hi", "--voice", "nobody", "-o", str(out), *_step2(stack)]) == 2
    assert "nobody" in capsys.readouterr().err
