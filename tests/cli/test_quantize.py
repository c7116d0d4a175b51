"""`stepaudio quantize` through the command line: a release folder in, a compressed-tensors folder the Step engine's
native LM loads and generates from, every other release file copied; clear refusals."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from stepaudio.cli.main import main
from stepaudio.engines.step.native_lm import NativeLM
from stepaudio.engines.step.paths import COSYVOICE_DIR, TTS_DIR
from stepaudio.lm.generate import GenerationConfig
from stepaudio.text.vocab import STEP1


def test_quantize_a_release_folder_from_a_dataset(step_stack: Path, tmp_path: Path, write_dataset: Callable[..., Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("llmcompressor", reason="needs the quantize extra: pip install 'stepaudio[quantize]'")
    out = tmp_path / "tts-fp8"
    data = write_dataset(tmp_path / "data", n=6, seconds=0.3, tokens=15)
    code = main(["quantize", str(step_stack / TTS_DIR), "--scheme", "fp8", "-o", str(out),
                 "--dataset", str(data), "--check-prompts", "1", "--check-steps", "4"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "14 linear layers quantized" in printed and "speech tokens" in printed and "greedy tokens agree" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["format"] == "float-quantized"
    assert (out / "tokenizer.model").is_file() and (out / COSYVOICE_DIR).is_dir()  # the release folder, again
    lm = NativeLM.load(out, quant="none")
    tokens = list(lm.stream([STEP1.bos_id, STEP1.bot_id, STEP1.audio_offset + 1030],
                            GenerationConfig(max_new_tokens=5, stop_ids=())))
    assert len(tokens) == 5


def test_refusals_name_the_fix(step_stack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("text without speech tokens\n")
    code = main(["quantize", str(step_stack / TTS_DIR), "--scheme", "int8", "-o", str(tmp_path / "o"),
                 "--prompts", str(prompts)])
    assert code == 2 and "no prompt holds a speech token" in capsys.readouterr().err
    code = main(["quantize", str(tmp_path / "missing"), "--scheme", "int8", "-o", str(tmp_path / "o"),
                 "--prompts", str(prompts)])
    assert code == 2 and "is not a model folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["quantize", str(step_stack / TTS_DIR), "--scheme", "int3", "-o", str(tmp_path / "o"),
              "--prompts", str(prompts)])
