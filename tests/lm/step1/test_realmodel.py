"""Loads the real released checkpoints unchanged (needs STEPAUDIO_MODEL_DIR holding the model folders)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from stepaudio.lm.step1.loading import load_step1

pytestmark = pytest.mark.realmodel


def _model_dir(name: str) -> Path:
    root = os.environ.get("STEPAUDIO_MODEL_DIR")
    if not root or not (Path(root) / name / "config.json").is_file():
        pytest.skip(f"set STEPAUDIO_MODEL_DIR to a folder holding {name}/")
    return Path(root) / name


def test_tts_3b_loads_and_continues_a_prompt() -> None:
    model = load_step1(_model_dir("Step-Audio-TTS-3B"))
    assert model.config.hidden_size == 3072 and model.lm_head.weight.dtype == torch.bfloat16
    with torch.inference_mode():
        logits = model(torch.tensor([[1, 4, 1, 2323, 78]]))
    assert torch.isfinite(logits.float()).all()


def test_chat_config_and_index_are_consistent() -> None:
    directory = _model_dir("Step-Audio-Chat")
    from stepaudio.lm.checkpoint import checkpoint_files
    from stepaudio.lm.step1.config import Step1Config
    from stepaudio.lm.step1.loading import expected_shapes

    files = checkpoint_files(directory)
    assert set(expected_shapes(Step1Config.from_json(directory))) <= set(files)
