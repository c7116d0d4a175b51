"""Step-Audio 2 token2wav conformance vectors (tiny random weights in the real key layout) and loaded models;
EditX's tiny decoder folder and its offline decoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from stepaudio.decoder.cosyvoice2.cfm import TensorNoise
from stepaudio.decoder.cosyvoice2.config import flow_config_from_yaml
from stepaudio.decoder.cosyvoice2.editx_token2wav import EditXToken2Wav
from stepaudio.decoder.cosyvoice2.flow import CausalMaskedDiffWithXvec
from stepaudio.decoder.cosyvoice2.flow_loading import load_flow
from stepaudio.decoder.cosyvoice2.hift import HiFT24k, ScriptedDraws
from stepaudio.decoder.cosyvoice2.hift_loading import load_hift24k
from stepaudio.decoder.cosyvoice2.prompt import Prompt
from stepaudio.testing.tiny_editx import write_tiny_editx_decoder


@pytest.fixture(scope="session")
def t2w_dir(conformance_dir: Path) -> Path:
    return conformance_dir / "step-audio2" / "token2wav"


@pytest.fixture(scope="session")
def tolerance(conformance_dir: Path) -> dict[str, float]:
    return dict(json.loads((conformance_dir / "step-audio2" / "tolerance_token2wav.json").read_text()))


@pytest.fixture(scope="session")
def meta(t2w_dir: Path) -> dict[str, Any]:
    return dict(json.loads((t2w_dir / "meta.json").read_text()))


@pytest.fixture(scope="session")
def offline(t2w_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(t2w_dir / "offline.safetensors"))


@pytest.fixture(scope="session")
def stream_vectors(t2w_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(t2w_dir / "stream.safetensors"))


@pytest.fixture(scope="session")
def flow(t2w_dir: Path) -> CausalMaskedDiffWithXvec:
    return load_flow(t2w_dir / "flow.safetensors", flow_config_from_yaml(t2w_dir / "flow.yaml"))


@pytest.fixture(scope="session")
def hift(t2w_dir: Path) -> HiFT24k:
    return load_hift24k(t2w_dir / "hift.safetensors")


@pytest.fixture(scope="session")
def ref_noise(offline: dict[str, torch.Tensor]) -> TensorNoise:
    return TensorNoise(offline["inputs.noise"])


@pytest.fixture(scope="session")
def ref_prompt(offline: dict[str, torch.Tensor]) -> Prompt:
    o = offline
    return Prompt(o["inputs.prompt_tokens"][0], o["inputs.prompt_mel"][0], o["inputs.spk_embedding"][0])


@pytest.fixture
def offline_draws(offline: dict[str, torch.Tensor]) -> ScriptedDraws:
    """The HiFT draws of the offline run (stateful: one per test)."""
    return ScriptedDraws([offline["hift.sine_phase_draw"]], offline["hift.noise_base"])


@pytest.fixture
def stream_draws(
    stream_vectors: dict[str, torch.Tensor], offline: dict[str, torch.Tensor], meta: dict[str, Any]
) -> ScriptedDraws:
    """The per-chunk phase draws of the streamed run; noise by the same tiling rule."""
    phases = [stream_vectors[f"chunk{i}.hift_sine_phase"] for i in range(len(meta["stream_chunks"]))]
    return ScriptedDraws(phases, offline["hift.noise_base"])


@pytest.fixture(scope="module")
def editx_decoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random EditX `CosyVoice-300M-25Hz/` (seed 3)."""
    return write_tiny_editx_decoder(tmp_path_factory.mktemp("editx") / "CosyVoice-300M-25Hz", seed=3)


@pytest.fixture(scope="module")
def editx_decoder(editx_decoder_dir: Path) -> EditXToken2Wav:
    return EditXToken2Wav.from_dir(editx_decoder_dir, seed=1)
