"""Load HiFT weights from CosyVoice `hift.pt` (torch state dict) or safetensors, with weight norm folded.

The checkpoint keys equal our module names. Weight-normalised convs may be stored the old way
(`X.weight_g`, `X.weight_v`), the new way (`X.parametrizations.weight.original0/1`) or already folded
(`X.weight`); all three become one plain `X.weight` = g * v / ||v|| (norm over every dim but dim 0).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from stepaudio.decoder.cosyvoice1.hift_config import HiFTConfig
from stepaudio.decoder.cosyvoice1.vocoder import HiFTGenerator
from stepaudio.errors import CheckpointError, brief

# Modules that the reference wraps in weight_norm (dim 0). Everything else is stored plainly.
WEIGHT_NORMED = re.compile(
    r"^(conv_pre|conv_post|ups\.\d+|(source_)?resblocks\.\d+\.convs[12]\.\d+|f0_predictor\.condnet\.\d+)$"
)
_STRIP_PREFIXES = ("generator.", "module.")


@dataclass(frozen=True)
class KeyRule:
    """One parameter of our model and where it comes from in a checkpoint."""

    name: str
    weight_norm: bool

    def sources(self) -> list[tuple[str, ...]]:
        """Alternative checkpoint key groups, in order of preference."""
        if not self.weight_norm:
            return [(self.name,)]
        module = self.name.removesuffix(".weight")
        return [
            (f"{module}.weight_g", f"{module}.weight_v"),
            (f"{module}.parametrizations.weight.original0", f"{module}.parametrizations.weight.original1"),
            (self.name,),
        ]


def hift_key_map(model: HiFTGenerator) -> list[KeyRule]:
    """The declarative map: every parameter of `model`, flagged when its checkpoint form is weight-normed."""
    rules = []
    for name, _ in model.named_parameters():
        module, _, leaf = name.rpartition(".")
        rules.append(KeyRule(name, leaf == "weight" and bool(WEIGHT_NORMED.match(module))))
    return rules


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Effective weight of `weight_norm(dim=0)`: v * (g / ||v||), the norm over all dims except 0."""
    norm = torch.linalg.vector_norm(v, dim=tuple(range(1, v.dim())), keepdim=True)
    return v * (g / norm)


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat name -> tensor dict from `.safetensors` or a torch pickle (loaded with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"HiFT checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many kinds on a cut or foreign file
        raise CheckpointError(f"{path}: not a readable HiFT checkpoint ({brief(exc)}): re-download "
                              f"{path.name}") from exc
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    return _strip_prefixes({str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)})


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _STRIP_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
    return state


def convert_state_dict(model: HiFTGenerator, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Checkpoint -> our plain state dict, folding weight norm; CheckpointError on missing/extra/mismatch."""
    expected = dict(model.named_parameters())
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for rule in hift_key_map(model):
        group = next((g for g in rule.sources() if all(k in state for k in g)), None)
        if group is None:
            raise CheckpointError(f"HiFT checkpoint is missing {rule.sources()[0][-1]!r} (for {rule.name})")
        if len(group) == 2:
            g, v = state[group[0]], state[group[1]]
            g_shape = (v.shape[0],) + (1,) * (v.dim() - 1)
            if tuple(g.shape) != g_shape:
                raise CheckpointError(f"HiFT checkpoint key {group[0]!r}: shape {tuple(g.shape)}, expected {g_shape}")
            tensor = fold_weight_norm(g.float(), v.float())
        else:
            tensor = state[group[0]]
        want = tuple(expected[rule.name].shape)
        if tuple(tensor.shape) != want:
            raise CheckpointError(
                f"HiFT checkpoint key {group[-1]!r}: shape {tuple(tensor.shape)}, model expects {want}"
            )
        out[rule.name] = tensor.float()
        used.update(group)
    extra = sorted(set(state) - used)
    if extra:
        raise CheckpointError(f"HiFT checkpoint has unexpected keys: {extra[:8]}")
    return out


def load_hift(
    checkpoint: str | Path | Mapping[str, torch.Tensor],
    config: HiFTConfig,
    device: torch.device | str = "cpu",
) -> HiFTGenerator:
    """Build the vocoder, load folded float32 weights, move it to `device`, eval mode."""
    state = checkpoint if isinstance(checkpoint, Mapping) else read_checkpoint(checkpoint)
    model = HiFTGenerator(config)
    model.load_state_dict(convert_state_dict(model, state), strict=True)
    return model.to(device=device, dtype=torch.float32).eval()


def load_hift_from_dir(model_dir: str | Path, device: torch.device | str = "cpu") -> HiFTGenerator:
    """A CosyVoice model directory: `cosyvoice.yaml` (the `hift:` node) + `hift.pt`."""
    model_dir = Path(model_dir)
    config = HiFTConfig.from_cosyvoice_yaml(model_dir / "cosyvoice.yaml")
    return load_hift(model_dir / "hift.pt", config, device)


def save_hift_safetensors(model: HiFTGenerator, path: str | Path) -> None:
    """Write the folded (plain) weights; `load_hift` reads them back."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(path))
