from __future__ import annotations

from pathlib import Path

import pytest

from stepaudio.cli.main import main
from stepaudio.engines.vllm import minimum_tensor_parallel, plan


def test_vllm_command_overrides_tied_embeddings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vllm-command", "--model-path", "/models"]) == 0
    out = capsys.readouterr().out
    assert "vllm serve /models/Step-Audio-Chat" in out and "--tensor-parallel-size 4" in out
    assert '{"tie_word_embeddings": false}' in out and "/models/Step-Audio-TTS-3B" in out
    assert "-O chat_url=http://127.0.0.1:8000/v1" in out


def test_tensor_parallel_sizing() -> None:
    assert minimum_tensor_parallel(7_059_412_992, 80) == 1
    assert minimum_tensor_parallel(263_893_180_416, 80) == 4
    assert minimum_tensor_parallel(263_893_180_416, 40) == 8
    assert plan("chat", Path("/m/Step-Audio-Chat"), tensor_parallel=8).model_dir == Path("/m/Step-Audio-Chat")
    with pytest.raises(ValueError):
        plan("video", Path("/m"))


def test_tts_inference_clone_needs_prompt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["tts-inference", "--model-path", str(tmp_path), "--output-path", str(tmp_path),
                 "--synthesis-type", "clone"])
    assert code == 2 and "--prompt-wav" in capsys.readouterr().err
