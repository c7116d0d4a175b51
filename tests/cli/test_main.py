from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stepaudio.audio.io import save_audio
from stepaudio.cli.main import SUBCOMMANDS, main


def test_console_script_lists_every_subcommand() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stepaudio.cli.main", "--help"], capture_output=True, text=True, check=True
    )
    for name in SUBCOMMANDS:
        assert name in result.stdout


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "COMMAND" in capsys.readouterr().out


def test_tags_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tags", "hi", "--style", "rap", "--emotion", "happy"]) == 0
    out = capsys.readouterr().out
    assert "(RAP)(高兴1)hi" in out and "music" in out
    assert main(["tags", "x", "--speed", "warp"]) == 2
    assert "unknown speed" in capsys.readouterr().err
    assert main(["tags", "(开心)x", "--strict"]) == 2


def test_audio_info_reports_and_converts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = np.arange(8000) / 8000
    path = save_audio(tmp_path / "in.flac", (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 8000)
    out_path = tmp_path / "out.wav"
    assert main(["audio-info", str(path), "--sample-rate", "16000", "--normalize", "-o", str(out_path)]) == 0
    out = capsys.readouterr().out
    assert "16000 Hz" in out and "1.000 s" in out and out_path.is_file()
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    assert main(["audio-info", str(tmp_path / "bad.wav")]) == 2
    assert "cannot decode" in capsys.readouterr().err


@pytest.mark.conformance
def test_text_and_prompt_commands(conformance_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokenizer = str(conformance_dir / "text")
    assert main(["text-tokenize", "你好", "--tokenizer", tokenizer]) == 0
    assert capsys.readouterr().out.split() == ["1", "324", "1027", "922"]
    assert main(["text-tokenize", "--tokenizer", tokenizer, "--decode", "324", "1027", "922"]) == 0
    assert capsys.readouterr().out.strip() == "你好"
    assert main(["prompt", "chat", "--tokenizer", tokenizer, "user:Tell me a joke."]) == 0
    ids = [int(x) for x in capsys.readouterr().out.split()]
    assert ids[:2] == [1, 4] and ids[-1] == 78
    assert main(["prompt", "tts", "--tokenizer", tokenizer, "hi", "--prompt-text", "p", "--prompt-ids", "65536"]) == 0
    assert "65536" in capsys.readouterr().out.split()
    assert main(["text-tokenize", "x", "--tokenizer", str(conformance_dir / "missing")]) == 2


def test_a_target_whose_module_is_missing_answers_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from stepaudio.cli.targets import add_targets, run_target

    parser = argparse.ArgumentParser()
    add_targets(parser, "target", "TARGET", {"ghost": ("stepaudio.eval.bench.no_such_module", "not built")})
    args = parser.parse_args(["ghost"])
    assert run_target(args, "benchmark", args.target) == 2
    assert "no_such_module" in capsys.readouterr().out
