"""`stepaudio quantize` through the command line: a release folder in, a compressed-tensors folder the Step engine's
native LM loads and generates from, every other release file copied; clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stepaudio.cli.main import main
from stepaudio.data.manifest import DatasetInfo, DatasetRow, DatasetWriter, TokenizerInfo, row_id, write_info
from stepaudio.engines.step.native_lm import NativeLM
from stepaudio.engines.step.paths import COSYVOICE_DIR, TTS_DIR
from stepaudio.lm.generate import GenerationConfig
from stepaudio.testing.tiny_stack import speech_like
from stepaudio.text.vocab import STEP1


def _dataset(root: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    write_info(root, DatasetInfo(engine="lite", tokenizer=TokenizerInfo("tiny")))
    writer = DatasetWriter(root)
    for i in range(n):
        text = f"第{i}句话，今天天气很好。"
        rid = row_id("lite", "Tingting", [], text)
        audio = writer.write_audio(rid, speech_like(0.3, 16000, i), 16000)
        tokens = tuple(int(t) for t in rng.choice([1, 2, 1030, 1031, 1032], size=15))
        writer.append(DatasetRow(rid, text, (), "Tingting", audio, 16000, 0.3, tokens, "lite"))
    return root


def test_quantize_a_release_folder_from_a_dataset(step_stack: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("llmcompressor", reason="needs the quantize extra: pip install 'stepaudio[quantize]'")
    out = tmp_path / "tts-fp8"
    code = main(["quantize", str(step_stack / TTS_DIR), "--scheme", "fp8", "-o", str(out),
                 "--dataset", str(_dataset(tmp_path / "data")), "--check-prompts", "1", "--check-steps", "4"])
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
