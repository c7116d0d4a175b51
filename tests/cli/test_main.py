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


def _one_line_error(code: int, err: str, command: str = "tts") -> str:
    """The stderr of a refused command: exit code 2 and a single `stepaudio CMD: error: ...` line, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"stepaudio {command}: error: "), err
    return err.strip()


def _linked_copy(stack: Path, dest: Path, spoil: str | None = None) -> Path:
    """`stack` linked file by file into `dest`, with `spoil` (a path inside it) a real copy the test may break."""
    for source in stack.rglob("*"):
        if source.is_file():
            target = dest / source.relative_to(stack)
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.relative_to(stack) == Path(spoil or ""):
                target.write_bytes(source.read_bytes())
            else:
                target.symlink_to(source)
    return dest


@pytest.mark.parametrize(("option", "message"), [
    ("colour=blue", "unknown step engine option colour; the options are api_key, chat_max_tokens,"),
    ("seed=abc", "step engine option seed takes an integer, not 'abc'"),
    ("flow_dtype=fp64", "step engine option flow_dtype='fp64' is not one of auto, fp32, bf16, fp16"),
    ("streaming=maybe", "step engine option streaming takes true or false, not 'maybe'"),
    ("quant=int3", "quant='int3' is not one of none, int8, int8-weight-only, int4, fp16-weights, bf16-packed, auto"),
])
def test_bad_step_options_are_one_line_naming_the_allowed_values(
        step_stack: Path, option: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["tts", "--engine", "step", "--model-path", str(step_stack), "-O", option, "hi"])
    assert message in _one_line_error(code, capsys.readouterr().err)


TTS_3B = "Step-Audio-TTS-3B"


def _drop(name: str):  # type: ignore[no-untyped-def]
    return lambda root: (root / name).unlink()


def _halve(name: str):  # type: ignore[no-untyped-def]
    def spoil(root: Path) -> None:
        data = (root / name).read_bytes()
        (root / name).write_bytes(data[: len(data) // 2])
    return spoil


def _remove_tts(root: Path) -> None:
    import shutil

    shutil.rmtree(root / TTS_3B)


BROKEN_LAYOUTS = {
    "no TTS-3B folder": (None, _remove_tts, r"no Step-Audio-TTS-3B folder in \S+: download it there "
                         r"\(huggingface-cli download stepfun-ai/Step-Audio-TTS-3B --local-dir \S+\) or pass "
                         r"-O tts_path=DIR"),
    "no tokenizer.model in TTS-3B": (f"{TTS_3B}/tokenizer.model", _drop(f"{TTS_3B}/tokenizer.model"),
                                     r"tokenizer model not found: \S+/Step-Audio-TTS-3B/tokenizer.model \(to fetch "
                                     r"the release again: huggingface-cli download stepfun-ai/Step-Audio-TTS-3B"),
    "no tokenizer.model anywhere": (None, lambda root: [(root / d / "tokenizer.model").unlink()
                                                        for d in (TTS_3B, "Step-Audio-Chat")],
                                    r"Step-Audio-TTS-3B/tokenizer.model is missing: the Step-Audio-TTS-3B download is "
                                    r"incomplete; fetch it again \(huggingface-cli download"),
    "shard cut in half": (f"{TTS_3B}/model.safetensors", _halve(f"{TTS_3B}/model.safetensors"),
                          r"model.safetensors is truncated: \d+ bytes of the \d+ its header lists; re-download the "
                          r"shard model.safetensors"),
    "config.json not JSON": (f"{TTS_3B}/config.json", lambda root: (root / TTS_3B / "config.json").write_text("{"),
                             r"config.json is not valid JSON \(.*\): re-download this config.json"),
    "CosyVoice without flow.pt": (f"{TTS_3B}/CosyVoice-300M-25Hz/flow.pt",
                                  _drop(f"{TTS_3B}/CosyVoice-300M-25Hz/flow.pt"),
                                  r"flow checkpoint not found: \S+/flow.pt \(to fetch the release again: "
                                  r"huggingface-cli download stepfun-ai/Step-Audio-TTS-3B"),
}


@pytest.mark.parametrize("case", list(BROKEN_LAYOUTS))
def test_broken_model_folders_are_one_line_naming_the_fix(step_stack: Path, tmp_path: Path, case: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import re

    spoil, breaker, message = BROKEN_LAYOUTS[case]
    root = _linked_copy(step_stack, tmp_path / "models", spoil)
    breaker(root)
    code = main(["tts", "--engine", "step", "--model-path", str(root), "-O", "max_segment_tokens=4", "hi",
                 "-o", str(tmp_path / "out.wav")])
    assert re.search(message, _one_line_error(code, capsys.readouterr().err))
    assert not (tmp_path / "out.wav").exists()


def test_the_tts_folder_given_as_model_path_names_its_parent(step_stack: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["tts", "--engine", "step", "--model-path", str(step_stack / TTS_3B), "hi"])
    line = _one_line_error(code, capsys.readouterr().err)
    assert f"is the {TTS_3B} folder itself" in line and f"(--model-path {step_stack})" in line


def test_python_m_stepaudio_prints_one_line_and_exits_2(step_stack: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "stepaudio", "tts", "--engine", "step", "--model-path",
                             str(step_stack), "-O", "seed=abc", "hi"], capture_output=True, text=True, timeout=120)
    line = _one_line_error(result.returncode, result.stderr)
    assert line == "stepaudio tts: error: step engine option seed takes an integer, not 'abc'"


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only errors raised on purpose become one line: anything else is a bug and must show where it happened."""
    import stepaudio.cli.tags

    def broken(args: object) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(stepaudio.cli.tags, "run", broken)
    with pytest.raises(ZeroDivisionError):
        main(["tags", "x"])


def test_a_message_with_newlines_is_printed_on_one_line(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import stepaudio.cli.tags
    from stepaudio.errors import CheckpointError

    def refuse(args: object) -> int:
        raise CheckpointError("config.yaml is not valid YAML: while scanning\n  in line 3\n   ^")

    monkeypatch.setattr(stepaudio.cli.tags, "run", refuse)
    line = _one_line_error(main(["tags", "x"]), capsys.readouterr().err, "tags")
    assert line == "stepaudio tags: error: config.yaml is not valid YAML: while scanning in line 3 ^"


def test_a_command_imports_only_its_own_modules() -> None:
    """`stepaudio --help` and `stepaudio bench lm` must not import torch before the bench sets OpenMP's wait
    policy (read once, when torch loads): only the subcommand and target named are imported."""
    probe = ("import sys\n"
             "from stepaudio.cli.main import build_parser, chosen_subcommand\n"
             "words = sys.argv[1:]\n"
             "build_parser(only=chosen_subcommand(words), words=words)\n"
             "print('torch' in sys.modules, 'stepaudio.eval.bench.decoder' in sys.modules)\n")
    def imported(*words: str) -> str:
        return subprocess.run([sys.executable, "-c", probe, *words], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert imported() == "False False"
    assert imported("bench", "lm", "--quant", "int4") == "False False"
    assert imported("bench", "decoder") == "False True"
