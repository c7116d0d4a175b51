"""Load the causal flow from the release `flow.pt` (a strict state dict) or a safetensors file.

The key map is declarative and the identity: every parameter of our model takes the tensor of the same
name (the module tree mirrors the reference). Each tensor is shape-checked against the config; a missing,
extra or mis-shaped key raises CheckpointError naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from stepaudio.decoder.cosyvoice1.flow_loading import read_state_dict
from stepaudio.decoder.cosyvoice2.config import FlowConfig
from stepaudio.decoder.cosyvoice2.flow import CausalMaskedDiffWithXvec
from stepaudio.errors import CheckpointError


def flow_key_shapes(config: FlowConfig) -> dict[str, tuple[int, ...]]:
    """Checkpoint key -> expected shape for `config` (built on the meta device: no memory, no init)."""
    with torch.device("meta"):
        model = CausalMaskedDiffWithXvec(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def check_state_dict(source: Mapping[str, torch.Tensor], config: FlowConfig) -> dict[str, torch.Tensor]:
    """The tensors our model takes, float, after checking names and shapes."""
    expected = flow_key_shapes(config)
    out: dict[str, torch.Tensor] = {}
    for key, shape in expected.items():
        if key not in source:
            raise CheckpointError(f"flow checkpoint: missing key {key!r} (expected shape {shape})")
        tensor = source[key]
        if tuple(tensor.shape) != shape:
            raise CheckpointError(
                f"flow checkpoint: key {key!r} has shape {tuple(tensor.shape)}, flow.yaml implies {shape}"
            )
        out[key] = tensor
    extra = sorted(set(source) - set(expected))
    if extra:
        raise CheckpointError(f"flow checkpoint: unexpected keys {extra[:5]}{' ...' if len(extra) > 5 else ''} "
                              "(is flow.yaml the one shipped with these weights?)")
    return out


def load_flow(
    weights: str | Path | Mapping[str, torch.Tensor],
    config: FlowConfig,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> CausalMaskedDiffWithXvec:
    """Build the flow for `config`, fill it from `weights` (path or state dict), eval mode on device/dtype."""
    source = weights if isinstance(weights, Mapping) else read_state_dict(weights)
    state = check_state_dict(source, config)
    with torch.device("meta"):
        model = CausalMaskedDiffWithXvec(config)
    model.load_state_dict(state, assign=True)
    return model.to(device=device, dtype=dtype).eval()
