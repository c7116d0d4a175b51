from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepaudio.decoder.cosyvoice2.config import flow_config_from_yaml
from stepaudio.decoder.cosyvoice2.flow import CausalMaskedDiffWithXvec
from stepaudio.decoder.cosyvoice2.flow_loading import flow_key_shapes, load_flow
from stepaudio.errors import CheckpointError


def test_key_map_covers_the_checkpoint_exactly(t2w_dir: Path) -> None:
    state = load_file(str(t2w_dir / "flow.safetensors"))
    shapes = flow_key_shapes(flow_config_from_yaml(t2w_dir / "flow.yaml"))
    assert shapes == {k: tuple(v.shape) for k, v in state.items()}


def test_flow_pt_loads_like_safetensors(t2w_dir: Path, tmp_path: Path, flow: CausalMaskedDiffWithXvec) -> None:
    torch.save(load_file(str(t2w_dir / "flow.safetensors")), tmp_path / "flow.pt")
    again = load_flow(tmp_path / "flow.pt", flow.config)
    for (name, a), b in zip(flow.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("damage", ["missing", "shape", "extra"])
def test_bad_checkpoint_names_the_key(t2w_dir: Path, damage: str) -> None:
    state = load_file(str(t2w_dir / "flow.safetensors"))
    key = "decoder.estimator.blocks.1.attn.q_norm.weight"
    if damage == "missing":
        del state[key]
    elif damage == "shape":
        state[key] = torch.zeros(3)
    else:
        state["decoder.estimator.blocks.2.attn.q_norm.weight"] = torch.zeros(16)
    with pytest.raises(CheckpointError, match=r"blocks\.[12]\.attn\.q_norm\.weight"):
        load_flow(state, flow_config_from_yaml(t2w_dir / "flow.yaml"))


def test_dtype_and_device_are_passed_in(t2w_dir: Path) -> None:
    model = load_flow(t2w_dir / "flow.safetensors", flow_config_from_yaml(t2w_dir / "flow.yaml"), dtype=torch.float64)
    assert isinstance(model, CausalMaskedDiffWithXvec) and not model.training
    assert model.encoder_proj.weight.dtype == torch.float64
