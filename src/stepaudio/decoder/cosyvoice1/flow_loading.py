"""Load flow weights from the reference `flow.pt` (a pickled state dict) or a safetensors file.

The key map is declarative: every parameter of our model takes its value from the same key in the
reference, except the fused attention projection, which concatenates `to_q`, `to_k`, `to_v`.
Every source tensor is shape-checked; a mismatch raises CheckpointError naming the key and both shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from stepaudio.decoder.cosyvoice1.flow import MaskedDiffWithXvec
from stepaudio.decoder.cosyvoice1.flow_config import FlowConfig
from stepaudio.errors import CheckpointError, brief

# our key suffix -> reference key suffixes concatenated along dim 0, in order
FUSED_KEYS: dict[str, tuple[str, ...]] = {
    "attn1.to_qkv.weight": ("attn1.to_q.weight", "attn1.to_k.weight", "attn1.to_v.weight"),
}


def flow_key_map(target_keys: list[str]) -> dict[str, tuple[str, ...]]:
    """Our state-dict key -> the reference keys it is built from."""
    mapping: dict[str, tuple[str, ...]] = {}
    for key in target_keys:
        for ours, theirs in FUSED_KEYS.items():
            if key.endswith(ours):
                prefix = key[: -len(ours)]
                mapping[key] = tuple(prefix + name for name in theirs)
                break
        else:
            mapping[key] = (key,)
    return mapping


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of `flow.pt` (torch pickle, loaded with weights_only) or of a `.safetensors` file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"flow checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # a cut file or a non-weights pickle; torch's messages run to many lines
        raise CheckpointError(f"{path}: not a readable flow checkpoint ({brief(exc)}): re-download "
                              f"{path.name}") from exc
    if isinstance(data, Mapping) and "state_dict" in data and isinstance(data["state_dict"], Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: expected a mapping of tensors")
    return dict(data)


def convert_state_dict(
    source: Mapping[str, torch.Tensor], model: MaskedDiffWithXvec, strict: bool = True
) -> dict[str, torch.Tensor]:
    """Reference-named tensors -> our state dict, checking every shape against `model`."""
    expected = model.state_dict()
    mapping = flow_key_map(list(expected))
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, sources in mapping.items():
        want = tuple(expected[key].shape)
        rows = want[0] // len(sources) if want else 0
        parts = []
        for name in sources:
            if name not in source:
                raise CheckpointError(f"flow checkpoint: missing key {name!r} (expected shape {want})")
            tensor = source[name]
            need = want if len(sources) == 1 else (rows, *want[1:])
            if tuple(tensor.shape) != need:
                raise CheckpointError(
                    f"flow checkpoint: key {name!r} has shape {tuple(tensor.shape)}, expected {need}"
                )
            parts.append(tensor)
            used.add(name)
        out[key] = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
    extra = sorted(set(source) - used)
    if strict and extra:
        raise CheckpointError(f"flow checkpoint: unexpected keys {extra[:5]}{' ...' if len(extra) > 5 else ''}")
    return out


def load_flow(
    path: str | Path,
    config: FlowConfig,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    strict: bool = True,
) -> MaskedDiffWithXvec:
    """Build the flow for `config` and fill it from `path`, in eval mode on `device` / `dtype`."""
    with torch.device("meta"):
        model = MaskedDiffWithXvec(config)
    state = convert_state_dict(read_state_dict(path), model, strict=strict)
    model.load_state_dict(state, assign=True)
    return model.to(device=device, dtype=dtype).eval()
