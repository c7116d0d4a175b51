"""`stepaudio vllm-command`: the printed recipes for both models, the Ray recipe, the fork, the table."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from stepaudio.cli.main import main


def _commands(out: str) -> list[list[str]]:
    return [shlex.split(line) for line in out.splitlines() if "vllm serve" in line]


def test_both_models_with_the_release_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vllm-command", "--model-path", "/models"]) == 0
    out = capsys.readouterr().out
    chat, tts = _commands(out)
    assert chat[:3] == ["vllm", "serve", "/models/Step-Audio-Chat"] and tts[2] == "/models/Step-Audio-TTS-3B"
    for argv in (chat, tts):
        assert argv[argv.index("--hf-overrides") + 1] == '{"tie_word_embeddings": false}'
        assert argv[argv.index("--attention-backend") + 1] == "TRITON_ATTN"
        assert argv[argv.index("--max-model-len") + 1] == "32768"
    assert chat[chat.index("--tensor-parallel-size") + 1] == "4" and tts[tts.index("--port") + 1] == "8001"
    assert 'pip install "vllm>=0.15.0"' in out
    assert "-O chat_url=http://127.0.0.1:8000/v1" in out and "-O tts_url=http://127.0.0.1:8001/v1" in out
    assert "263.9 GB of weights" in out and "4 x H100" in out


def test_two_node_pipeline_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vllm-command", "--model-path", "/models", "--model", "chat", "--gpu", "rtx4090"]) == 0
    out = capsys.readouterr().out
    (argv,) = _commands(out)
    assert argv[argv.index("--tensor-parallel-size") + 1] == "8"
    assert argv[argv.index("--pipeline-parallel-size") + 1] == "2"
    assert argv[argv.index("--distributed-executor-backend") + 1] == "ray"
    assert "ray start --head" in out and "ray start --address" in out and "2 nodes of 8 GPUs" in out


def test_quantized_and_fork(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["vllm-command", "--model-path", "/models", "--model", "chat", "--format", "int4",
                 "--gpu", "h200"]) == 0
    out = capsys.readouterr().out
    assert "1 x H200" in out and "expects a int4 compressed-tensors checkpoint" in out
    assert main(["vllm-command", "--model-path", "/models", "--model", "tts", "--fork"]) == 0
    out = capsys.readouterr().out
    assert "OPTIMUS_LIB_PATH=/models/Step-Audio-TTS-3B/lib vllm serve" in out and "vLLM < 0.15.0" in out


def test_table_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vllm-command", "--table"]) == 0
    out = capsys.readouterr().out
    assert "| Step-Audio-Chat | bf16 | 263.9 | 4 | 4 | 4 | 8 | 8 | 16 (8x2 PP) |" in out
    assert main(["vllm-command"]) == 2
    assert "needs --model-path" in capsys.readouterr().err
    assert main(["vllm-command", "--model-path", "/m", "--model", "chat", "--tp", "3"]) == 2
    assert "does not divide" in capsys.readouterr().err


def test_docs_serving_table_is_the_printed_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vllm-command", "--table"]) == 0
    doc = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text(encoding="utf-8")
    for line in capsys.readouterr().out.splitlines():
        assert line in doc, f"docs/serving.md lacks the table line {line!r}: paste `vllm-command --table` there"


def test_step2_recipes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["vllm-command", "--model", "step2", "--model-path", "/models"]) == 0
    out = capsys.readouterr().out
    (argv,) = _commands(out)
    docker = argv[: argv.index("--")]
    assert docker[:2] == ["docker", "run"] and "stepfun2025/vllm:step-audio-2-v20250909" in docker
    assert docker[docker.index("-v") + 1] == "/models/Step-Audio-2-mini:/Step-Audio-2-mini"
    serve = argv[argv.index("--") + 1 :]
    assert serve[:3] == ["vllm", "serve", "/Step-Audio-2-mini"]
    for flag, value in [("--served-model-name", "step-audio-2-mini"), ("--tool-call-parser", "step_audio_2"),
                        ("--tokenizer-mode", "step_audio_2"), ("--chat_template_content_format", "string"),
                        ("--audio-parser", "step_audio_2_tts_ta4"), ("--max-model-len", "16384"),
                        ("--tensor-parallel-size", "1")]:
        assert serve[serve.index(flag) + 1] == value, flag
    assert "--trust-remote-code" in serve and "--enable-auto-tool-choice" in serve
    assert "16.6 GB of weights" in out and "-O server_url=http://127.0.0.1:8000/v1" in out
    release = tmp_path / "release"
    release.mkdir()
    (release / "config.json").write_text("{}")
    assert main(["vllm-command", "--model", "step2", "--model-path", str(release), "--no-docker", "--tp", "2",
                 "--port", "9000"]) == 0
    (argv,) = _commands(capsys.readouterr().out)
    assert argv[:3] == ["vllm", "serve", str(release)] and argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert main(["vllm-command", "--model", "step2", "--model-path", str(release), "--omni"]) == 0
    (argv,) = _commands(capsys.readouterr().out)
    assert argv[:4] == ["vllm", "serve", str(release), "--omni"]
    assert main(["vllm-command", "--model", "step2", "--model-path", "/m", "--format", "int4"]) == 2
    assert "served in bf16" in capsys.readouterr().err
    assert main(["vllm-command", "--model", "step2", "--model-path", "/m", "--tp", "8"]) == 2
    assert "28 heads" in capsys.readouterr().err
