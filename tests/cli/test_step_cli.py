"""`stepaudio tts/chat/asr --engine step` and the reference entry points, end to end on a tiny release-layout stack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stepaudio.audio.io import load_audio, save_audio
from stepaudio.cli.main import main
from stepaudio.testing.tiny_stack import speech_like, write_tiny_step_stack

FAST = ["-O", "seed=0", "-O", "max_segment_tokens=30", "-O", "chat_max_tokens=10"]


@pytest.fixture(scope="module")
def stack(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_step_stack(tmp_path_factory.mktemp("stack"), conformance_dir / "text" / "tokenizer.model")


@pytest.fixture(scope="module")
def question(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_audio(tmp_path_factory.mktemp("q") / "question.wav", speech_like(1.5, 16000, seed=7), 16000)


def _step(stack: Path) -> list[str]:
    return ["--engine", "step", "--model-path", str(stack), *FAST]


def test_tts_with_tags_and_friendly_options_writes_speech(stack: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tagged.wav"
    assert main(["tts", "(高兴1)(四川话)今天天气真好。", "-o", str(out), *_step(stack)]) == 0
    audio = load_audio(out)
    assert audio.sample_rate == 22050 and audio.duration > 0.2
    slow = tmp_path / "slow.wav"
    assert main(["tts", "今天天气真好。", "-o", str(slow), "--emotion", "sad", "--dialect", "cantonese",
                 "--speed", "0.5", "--volume", "0.5", *_step(stack)]) == 0
    slowed = load_audio(slow)
    assert slowed.duration > audio.duration  # a 0.5x rate factor stretches the same token budget
    assert float(np.abs(slowed.samples).max()) <= 0.5 + 1e-6
    capsys.readouterr()
    assert main(["tts", "--list-voices", *_step(stack)]) == 0
    assert "Tingting" in capsys.readouterr().out.split()


def test_tts_errors_are_messages_not_tracebacks(stack: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tts", "你好", "--voice", "Nobody", "-o", str(tmp_path / "x.wav"), *_step(stack)]) == 2
    assert "Nobody" in capsys.readouterr().err
    assert main(["tts", "(不存在的标签)你好", "--strict", "-o", str(tmp_path / "x.wav"), *_step(stack)]) == 2
    assert "不存在的标签" in capsys.readouterr().err
    assert main(["tts", "你好", "-o", str(tmp_path / "x.wav"), "--engine", "step",
                 "--model-path", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_chat_answers_a_spoken_question_with_text_and_speech(stack: Path, question: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    reply = tmp_path / "reply.wav"
    assert main(["chat", str(question), "-o", str(reply), "--no-vad", "--no-warmup", "--max-new-tokens", "6",
                 *_step(stack)]) == 0
    out = capsys.readouterr().out
    assert "total" in out
    assert load_audio(reply).duration > 0


def test_asr_prints_a_transcript_per_file(stack: Path, question: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "asr.json"
    assert main(["asr", str(question), str(question), "--json", str(report), *_step(stack)]) == 0
    assert capsys.readouterr().out.count(str(question)) == 2
    assert report.read_text(encoding="utf-8").count('"file"') == 2


def test_reference_entry_points(stack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "offline"
    assert main(["offline-inference", "--model-path", str(stack), "--output-dir", str(out), *FAST]) == 0
    for name in ("tqta", "aqta"):
        assert load_audio(out / f"output_e2e_{name}.wav").duration > 0
    tts_out = tmp_path / "tts"
    assert main(["tts-inference", "--model-path", str(stack), "--output-path", str(tts_out), *FAST]) == 0
    assert load_audio(tts_out / "output_tts.wav").duration > 0
    prompt = save_audio(tmp_path / "prompt.wav", speech_like(2.0, 16000, seed=3), 16000)
    assert main(["tts-inference", "--model-path", str(stack), "--output-path", str(tts_out), "--synthesis-type",
                 "clone", "--prompt-wav", str(prompt), "--prompt-text", "这是提示音。", *FAST]) == 0
    assert load_audio(tts_out / "output_clone.wav").duration > 0
    assert "output_clone.wav" in capsys.readouterr().out
