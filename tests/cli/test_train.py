"""`stepaudio train tts` end to end through the command line: LoRA with --merge, resume, and clear refusals."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from stepaudio.cli.main import main
from stepaudio.engines.step.paths import COSYVOICE_DIR, TTS_DIR
from stepaudio.lm.step1.loading import load_step1
from stepaudio.testing.tiny_stack import write_tiny_step_stack
from stepaudio.train.lora import ADAPTER_WEIGHTS


@pytest.fixture(scope="module")
def stack(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_step_stack(tmp_path_factory.mktemp("stack"), conformance_dir / "text" / "tokenizer.model")


def _train(*extra: str) -> int:
    return main(["train", "tts", "--no-progress", "--steps", "3", "--batch-size", "2", "--lr", "1e-2",
                 "--warmup-steps", "1", "--save-every", "2", "--eval-every", "3", *extra])


def test_lora_merge_writes_adapters_and_a_loadable_standard_checkpoint(
        stack: Path, tmp_path: Path, write_dataset: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "data", n=10, seconds=0.6, tokens=20)
    out = tmp_path / "out"
    code = _train("--dataset", str(data), "--out", str(out), "--init", str(stack / TTS_DIR),
                  "--lora-rank", "4", "--merge", "--eval-fraction", "0.2")
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 3 and summary["final_loss"] < summary["first_loss"]
    assert summary["trainable_params"] < 0.2 * summary["total_params"]
    assert (out / "adapter" / ADAPTER_WEIGHTS).is_file() and (out / "loss.csv").is_file()
    assert (out / "loss.png").is_file() and (out / "speakers" / "speakers_info.json").is_file()
    merged = load_step1(out / "model")
    base = load_step1(stack / TTS_DIR)
    assert (out / "model" / "tokenizer.model").is_file()
    assert (out / "model" / COSYVOICE_DIR / "flow.pt").is_file()  # a complete drop-in Step-Audio-TTS-3B
    assert merged.config == base.config
    changed = [k for k, v in merged.state_dict().items() if not torch.equal(v, base.state_dict()[k])]
    assert changed and all("_proj" in k for k in changed)  # LoRA touched only the targeted linears


def test_resume_continues_and_a_second_run_without_resume_is_refused(
        stack: Path, tmp_path: Path, write_dataset: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "data", n=10, seconds=0.6, tokens=20)
    args = ("--dataset", str(data), "--out", str(tmp_path / "out"), "--init", str(stack / TTS_DIR))
    assert _train(*args) == 0
    capsys.readouterr()
    assert _train(*args) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "tts", "--no-progress", "--steps", "5", "--batch-size", "2", "--save-every", "2",
                 *args, "--resume"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["resumed_from"] == 3 and summary["steps"] == 5


def test_bad_input_is_a_clear_error(stack: Path, tmp_path: Path, write_dataset: Callable[..., Path],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "data", n=3, seconds=0.6, tokens=20)
    init = ("--init", str(stack / TTS_DIR))
    assert _train("--dataset", str(tmp_path / "nothing"), "--out", str(tmp_path / "o1"), *init) == 2
    assert "not a stepaudio dataset" in capsys.readouterr().err
    assert _train("--dataset", str(data), "--out", str(tmp_path / "o2"), *init, "--merge") == 2
    assert "--merge needs --lora-rank" in capsys.readouterr().err
    assert _train("--dataset", str(data), "--out", str(tmp_path / "o3"), "--config", "tts-3b") == 2
    assert "--tokenizer" in capsys.readouterr().err
    shard = data / "manifest-00000.jsonl"
    lines = shard.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[1])
    row["audio_tokens"] = [7, 9999]
    lines[1] = json.dumps(row, ensure_ascii=False)
    shard.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert _train("--dataset", str(data), "--out", str(tmp_path / "o4"), *init) == 2
    err = capsys.readouterr().err
    assert "manifest-00000.jsonl:2" in err and "9999" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        _train("--dataset", str(data), "--out", str(tmp_path / "o5"), *init, "--config", "tts-3b")
    assert not (tmp_path / "o4" / "checkpoints").exists()


def test_memory_table_for_tts_3b(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "memory", "--lora-rank", "8"]) == 0
    out = capsys.readouterr().out
    assert "not measured" in out and "LoRA r=8" in out and "full +ckpt FSDP/8" in out and "3.530B" in out


def test_from_scratch_with_a_config_and_bf16_lora_on_a_bf16_base(
        stack: Path, tmp_path: Path, write_dataset: Callable[..., Path], conformance_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from stepaudio.testing.tiny_lm import tiny_step1_config

    data = write_dataset(tmp_path / "data", n=6, seconds=0.6, tokens=20)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_step1_config(layers=1).to_hf_dict()))
    tokenizer = conformance_dir / "text" / "tokenizer.model"
    assert _train("--dataset", str(data), "--out", str(tmp_path / "scratch"), "--config", str(config),
                  "--tokenizer", str(tokenizer)) == 0
    scratch = json.loads(capsys.readouterr().out)
    assert scratch["final_loss"] < scratch["first_loss"]
    assert load_step1(tmp_path / "scratch" / "model").config.num_hidden_layers == 1
    assert _train("--dataset", str(data), "--out", str(tmp_path / "bf16"), "--init", str(stack / TTS_DIR),
                  "--lora-rank", "2", "--merge", "--dtype", "bf16") == 0
    capsys.readouterr()
    merged = load_step1(tmp_path / "bf16" / "model")
    assert merged.lm_head.weight.dtype == torch.bfloat16
    assert json.loads((tmp_path / "bf16" / "model" / "config.json").read_text())["torch_dtype"] == "bfloat16"


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_finishes_from_a_complete_checkpoint(
        stack: Path, tmp_path: Path, write_dataset: Callable[..., Path]) -> None:
    import signal
    import subprocess
    import sys
    import time

    data = write_dataset(tmp_path / "data", n=12, seconds=0.6, tokens=20)
    out = tmp_path / "out"
    base = [sys.executable, "-m", "stepaudio.cli.main", "train", "tts", "--dataset", str(data), "--out", str(out),
            "--init", str(stack / TTS_DIR), "--batch-size", "2", "--save-every", "3", "--keep-checkpoints", "3",
            "--no-progress"]
    proc = subprocess.Popen([*base, "--steps", "400"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = out / "checkpoints"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list(checkpoints.glob("step-*"))) < 2:
        time.sleep(0.05)
    time.sleep(0.3)  # most likely in the middle of the next step or checkpoint write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    from stepaudio.train.checkpoint import complete_checkpoints, load_trainer_state

    done = complete_checkpoints(out)
    assert done and all((p / "model" / "model.safetensors").is_file() for p in done)
    killed_at = load_trainer_state(done[-1]).step
    resumed = subprocess.run([*base, "--steps", str(killed_at + 3), "--resume"], capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["resumed_from"] == killed_at and summary["steps"] == killed_at + 3
    assert not [p for p in checkpoints.iterdir() if p.name.startswith(".partial-")]
    steps = [int(line.split(",")[0]) for line in (out / "loss.csv").read_text().splitlines()[1:]]
    assert steps == list(range(killed_at + 4))  # one trajectory: rows after the checkpoint were dropped


def test_format_editx_trains_on_editx_prompts(stack: Path, tmp_path: Path, write_dataset: Callable[..., Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "data", n=10, seconds=0.6, tokens=20)
    out = tmp_path / "out"
    assert _train("--dataset", str(data), "--out", str(out), "--init", str(stack / TTS_DIR), "--format", "editx",
                  "--lora-rank", "4", "--eval-fraction", "0") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["prompt_format"] == "editx" and summary["train_examples"] == 10
    assert not (out / "speakers").exists()  # clone prompts: no built-in speakers to export
    assert summary["final_loss"] < summary["first_loss"]
