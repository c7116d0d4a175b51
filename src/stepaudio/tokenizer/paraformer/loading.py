"""Load the Paraformer-online encoder from the real release files.

``config.yaml`` is read as plain data (``yaml.safe_load`` semantics; tags are ignored, nothing is
constructed), ``model.pt`` as a torch pickle of a state dict (``weights_only=True``), or a
``.safetensors`` file. Only ``encoder.*`` keys are used; the CTC/predictor/decoder keys of the
full ASR model are ignored. The key map is declarative and every key and shape is checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from stepaudio.errors import CheckpointError, brief
from stepaudio.tokenizer.paraformer.encoder import ParaformerEncoder, ParaformerEncoderConfig
from stepaudio.tokenizer.paraformer.frontend import FrontendConfig

__all__ = [
    "CHECKPOINT_PREFIX",
    "encoder_key_map",
    "load_encoder",
    "load_encoder_state",
    "load_paraformer_config",
    "parse_paraformer_config",
]

CHECKPOINT_PREFIX = "encoder."

# Per-layer parameters: our name (under the layer) -> checkpoint name (under the layer).
_LAYER_KEYS = (
    "norm1.weight",
    "norm1.bias",
    "norm2.weight",
    "norm2.bias",
    "self_attn.linear_q_k_v.weight",
    "self_attn.linear_q_k_v.bias",
    "self_attn.fsmn_block.weight",
    "self_attn.linear_out.weight",
    "self_attn.linear_out.bias",
    "feed_forward.w_1.weight",
    "feed_forward.w_1.bias",
    "feed_forward.w_2.weight",
    "feed_forward.w_2.bias",
)


def encoder_key_map(config: ParaformerEncoderConfig) -> dict[str, str]:
    """Our parameter name -> checkpoint key, for every parameter of :class:`ParaformerEncoder`."""
    prefixes = ["encoders0.0."] + [f"encoders.{i}." for i in range(config.num_blocks - 1)]
    mapping = {p + k: CHECKPOINT_PREFIX + p + k for p in prefixes for k in _LAYER_KEYS}
    for k in ("after_norm.weight", "after_norm.bias"):
        mapping[k] = CHECKPOINT_PREFIX + k
    return mapping


def _plain_yaml(text: str) -> Any:
    import yaml

    class _PlainLoader(yaml.SafeLoader):
        """SafeLoader that reads any tagged node as the plain data under the tag."""

    def _untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    _PlainLoader.add_multi_constructor("", _untagged)
    try:
        return yaml.load(text, Loader=_PlainLoader)  # a SafeLoader subclass: no object construction
    except yaml.YAMLError as exc:
        raise CheckpointError(f"config.yaml is not valid YAML ({' '.join(str(exc).split())}): re-download it") from exc


def _pick(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that are fields of dataclass ``cls``, converted to the field type."""
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in values or values[f.name] is None:
            continue
        default = f.default
        value = values[f.name]
        try:
            out[f.name] = type(default)(value) if isinstance(default, (int, float, str, bool)) else value
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"config.yaml: bad value {value!r} for {f.name}") from exc
    return out


def parse_paraformer_config(data: Mapping[str, Any]) -> tuple[ParaformerEncoderConfig, FrontendConfig]:
    """Encoder and frontend configs from the parsed ``config.yaml`` mapping."""
    encoder_conf = data.get("encoder_conf")
    frontend_conf = data.get("frontend_conf") or {}
    if not isinstance(encoder_conf, Mapping):
        raise CheckpointError("config.yaml has no encoder_conf mapping")
    if not isinstance(frontend_conf, Mapping):
        raise CheckpointError("config.yaml: frontend_conf is not a mapping")
    encoder_type = data.get("encoder", "SANMEncoderChunkOpt")
    if encoder_type != "SANMEncoderChunkOpt":
        raise CheckpointError(f"config.yaml: encoder {encoder_type!r} is not SANMEncoderChunkOpt")
    for key, want in (("input_layer", "pe_online"), ("selfattention_layer_type", "sanm")):
        if encoder_conf.get(key, want) != want:
            raise CheckpointError(f"config.yaml: encoder_conf.{key} is {encoder_conf[key]!r}, need {want!r}")
    frontend = FrontendConfig(**_pick(FrontendConfig, frontend_conf))
    values = dict(encoder_conf)
    values.setdefault("input_size", data.get("input_size") or frontend.output_size)
    return ParaformerEncoderConfig(**_pick(ParaformerEncoderConfig, values)), frontend


def load_paraformer_config(path: str | Path) -> tuple[ParaformerEncoderConfig, FrontendConfig]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Paraformer config not found: {path}")
    data = _plain_yaml(path.read_text(encoding="utf-8"))
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path}: expected a YAML mapping at the top level")
    return parse_paraformer_config(data)


def load_encoder_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``encoder.*`` tensors of ``model.pt`` (torch pickle) or a ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Paraformer checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            names = [k for k in handle.keys() if k.startswith(CHECKPOINT_PREFIX)]  # noqa: SIM118
            return {k: handle.get_tensor(k) for k in names}
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle that needs code, or a corrupt file
        raise CheckpointError(f"{path}: not a loadable weights-only torch checkpoint ({brief(exc)}): re-download "
                              f"{path.name}") from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {k: v for k, v in state.items() if isinstance(k, str) and k.startswith(CHECKPOINT_PREFIX)}


def load_encoder(
    config: ParaformerEncoderConfig,
    state: Mapping[str, torch.Tensor],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> ParaformerEncoder:
    """Build the encoder and fill it through :func:`encoder_key_map`, checking every key and shape."""
    with torch.device("meta"):
        encoder = ParaformerEncoder(config)
    ours = dict(encoder.state_dict())
    mapping = encoder_key_map(config)
    if set(mapping) != set(ours):
        raise CheckpointError(f"internal key map mismatch: {sorted(set(mapping) ^ set(ours))[:5]}")
    unexpected = sorted(set(state) - set(mapping.values()))
    if unexpected:
        raise CheckpointError(
            f"checkpoint key {unexpected[0]!r} is not part of an encoder with "
            f"num_blocks={config.num_blocks} ({len(unexpected)} unexpected keys)"
        )
    loaded: dict[str, torch.Tensor] = {}
    for name, key in mapping.items():
        if key not in state:
            raise CheckpointError(f"checkpoint is missing key {key!r}")
        tensor = state[key]
        if tuple(tensor.shape) != tuple(ours[name].shape):
            raise CheckpointError(
                f"checkpoint key {key!r} has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(ours[name].shape)}"
            )
        loaded[name] = tensor.to(device=device, dtype=dtype)
    encoder.load_state_dict(loaded, assign=True)
    return encoder.eval()
