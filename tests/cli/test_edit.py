"""`stepaudio edit` and `stepaudio tts --engine editx --voice-wav` on a tiny EditX release folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from stepaudio.cli.main import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def stack(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stepaudio.testing.tiny_editx import write_tiny_editx_stack

    return write_tiny_editx_stack(tmp_path_factory.mktemp("editx-cli"), conformance_dir / "text" / "tokenizer.model")


def _engine(stack: Path) -> list[str]:
    return ["--model-path", str(stack), "-O", "seed=0", "-O", "max_new_tokens=40"]


def test_tts_clones_a_voice_wav(stack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "clone.wav"
    code = main(["tts", "[Sichuanese]今天天气好得很。", "--engine", "editx", *_engine(stack),
                 "--voice-wav", str(stack / "prompt.wav"), "--voice-text", "一段测试的语音。", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    info = sf.info(out)
    assert info.samplerate == 24000 and info.frames > 0
    code = main(["tts", "你好", "--engine", "editx", *_engine(stack), "--voice-wav", str(stack / "prompt.wav"),
                 "-o", str(tmp_path / "x.wav")])
    assert code == 2 and "--voice-text" in capsys.readouterr().err
    code = main(["tts", "你好", "--engine", "editx", *_engine(stack), "-o", str(tmp_path / "x.wav")])
    assert code == 2 and "only clones" in capsys.readouterr().err


def test_three_step_edit_chain(stack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "source.wav"
    assert main(["tts", "我觉得这个计划可行。", "--engine", "editx", *_engine(stack), "--voice-wav",
                 str(stack / "prompt.wav"), "--voice-text", "一段测试的语音。", "-o", str(source)]) == 0
    out = tmp_path / "edited.wav"
    code = main(["edit", str(source), "--text", "我觉得这个计划可行。", *_engine(stack),
                 "--paralinguistic", "我觉得[Uhm]这个计划可行。", "--emotion", "sad", "--style", "whisper",
                 "--keep-steps", "-o", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert [line.split()[2] for line in printed.splitlines() if line.strip().startswith("step")] == [
        "paralinguistic", "emotion:sad", "style:whisper"]
    for path in (out, *(tmp_path / f"edited.step{i}.wav" for i in (1, 2, 3))):
        assert sf.info(path).samplerate == 24000 and sf.info(path).frames > 0
    assert "3 edits" in printed


def test_denoise_needs_no_text_and_repeats(stack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "clean.wav"
    assert main(["edit", str(stack / "prompt.wav"), *_engine(stack), "--denoise", "--vad", "-n", "2",
                 "-o", str(out)]) == 0
    assert "4 edits" in capsys.readouterr().out and sf.info(out).frames > 0


def test_edit_errors_name_the_fix(stack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompt = str(stack / "prompt.wav")
    assert main(["edit", prompt, *_engine(stack), "-o", str(tmp_path / "o.wav")]) == 2
    assert "--emotion" in capsys.readouterr().err
    assert main(["edit", prompt, *_engine(stack), "--emotion", "happy", "-o", str(tmp_path / "o.wav")]) == 2
    assert "--text" in capsys.readouterr().err
    assert main(["edit", str(tmp_path / "none.wav"), *_engine(stack), "--vad"]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["edit", prompt, "--emotion", "ecstatic"])
