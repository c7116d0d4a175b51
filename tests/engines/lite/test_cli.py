"""The chat, tts and asr commands end to end with the real lite models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stepaudio.audio.io import load_audio
from stepaudio.cli.main import main
from stepaudio.engines.base import Engine

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.fixture()
def reuse_engine(lite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve the session's loaded models to the commands instead of loading them again."""
    def build(args: Any) -> Engine:
        assert args.engine == "lite"
        return lite_engine

    for module in ("chat", "asr"):
        monkeypatch.setattr(f"stepaudio.cli.{module}.create_engine_from_args", build)


def test_chat_answers_the_example_question(reuse_engine: None, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    reply = tmp_path / "reply.wav"
    assert main(["chat", "--engine", "lite", str(EXAMPLES / "question_capital.wav"), "--output", str(reply),
                 "--temperature", "0", "--no-warmup"]) == 0
    out = capsys.readouterr().out
    assert "you:   What is the capital of France?" in out
    assert "Paris" in out.split("reply:", 1)[1]
    assert "times: VAD" in out and "ASR" in out and "LLM first token" in out and "TTS first audio" in out
    audio = load_audio(reply)
    assert audio.sample_rate == 22050 and audio.duration > 0.5


def test_asr_command_on_a_real_recording(reuse_engine: None, librivox: dict[Path, str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = next(p for p in librivox if p.stem.endswith("0880"))
    assert main(["asr", "--engine", "lite", str(path), "--language", "en"]) == 0
    assert "He was not an ill-disposed young man" in capsys.readouterr().out


def test_tts_command_through_the_registry(lite_engine: Engine, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out_path = tmp_path / "hello.wav"
    assert main(["tts", "--engine", "lite", "(高兴1)Hello there. How are you?", "-o", str(out_path),
                 "--speed", "slow"]) == 0
    out = capsys.readouterr().out
    assert "warning:" in out and "高兴1" in out
    assert load_audio(out_path).duration > 1.0
    assert main(["tts", "--engine", "lite", "Hi.", "--emotion", "sad", "--strict", "-o", str(out_path)]) == 2
