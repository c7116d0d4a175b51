"""Tiny random audio encoders and the Step-Audio 2 conformance folders for the audio_encoder tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from stepaudio.audio_encoder.config import AudioEncoderConfig
from stepaudio.audio_encoder.model import AudioEncoder

TINY = AudioEncoderConfig(
    n_mels=16, n_audio_ctx=64, n_audio_state=24, n_audio_head=3, n_audio_layer=2, llm_dim=20, torch_dtype="float32"
)


def random_encoder(config: AudioEncoderConfig = TINY, seed: int = 0) -> AudioEncoder:
    """Every weight random (LayerNorm weights near 1), so no parameter can hide a bug."""
    torch.manual_seed(seed)
    model = AudioEncoder(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "ln" in name or "norm" in name:
                param.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(param))
            else:
                param.copy_(torch.randn_like(param) / param.shape[-1] ** 0.5)
    return model.eval()


@pytest.fixture
def tiny_encoder() -> Callable[..., AudioEncoder]:
    return random_encoder


@pytest.fixture(scope="session")
def step2_dir(conformance_dir: Path) -> Path:
    return conformance_dir / "step-audio2"


@pytest.fixture(scope="session")
def step2_meta(step2_dir: Path) -> dict[str, Any]:
    return json.loads((step2_dir / "llm" / "meta.json").read_text())
