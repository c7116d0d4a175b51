"""Typed configuration of the CosyVoice-1 flow decoder (MaskedDiffWithXvec), read as plain numbers.

Two sources: the real `cosyvoice.yaml` (HyperPyYAML: its `!new:` / `!ref` tags are read as plain data,
nothing is constructed) and the `hparams.json` of the conformance set. Both give the same tree.
"""

from __future__ import annotations

import ast
import json
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from stepaudio.errors import CheckpointError


@dataclass(frozen=True)
class ConformerConfig:
    """ConformerEncoder as the flow uses it: linear input layer, espnet rel-pos attention, no conv module."""

    input_size: int = 512
    output_size: int = 512
    attention_heads: int = 8
    linear_units: int = 2048
    num_blocks: int = 6
    normalize_before: bool = True
    input_layer: str = "linear"
    pos_enc_layer_type: str = "rel_pos_espnet"
    selfattention_layer_type: str = "rel_selfattn"
    activation_type: str = "swish"
    use_cnn_module: bool = False
    macaron_style: bool = False

    def __post_init__(self) -> None:
        unsupported = {
            "input_layer": (self.input_layer, "linear"),
            "pos_enc_layer_type": (self.pos_enc_layer_type, "rel_pos_espnet"),
            "selfattention_layer_type": (self.selfattention_layer_type, "rel_selfattn"),
            "use_cnn_module": (self.use_cnn_module, False),
            "macaron_style": (self.macaron_style, False),
        }
        for name, (value, wanted) in unsupported.items():
            if value != wanted:
                raise CheckpointError(f"flow encoder: {name}={value!r} is not supported (only {wanted!r})")
        if self.activation_type not in ("swish", "relu", "gelu"):
            raise CheckpointError(f"flow encoder: activation_type={self.activation_type!r} is not supported")
        if self.output_size % self.attention_heads:
            raise CheckpointError("flow encoder: output_size must be divisible by attention_heads")


@dataclass(frozen=True)
class LengthRegulatorConfig:
    """InterpolateRegulator: one (conv k3, GroupNorm, Mish) group per sampling ratio, then a 1x1 conv."""

    channels: int = 80
    sampling_ratios: tuple[int, ...] = (1, 1, 1, 1)
    out_channels: int | None = None
    groups: int = 1


@dataclass(frozen=True)
class CFMConfig:
    """ConditionalCFM sampling settings (the reference hard-codes 10 steps in `inference`)."""

    sigma_min: float = 1e-6
    solver: str = "euler"
    t_scheduler: str = "cosine"
    inference_cfg_rate: float = 0.7
    n_timesteps: int = 10
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.solver != "euler":
            raise CheckpointError(f"flow cfm: solver {self.solver!r} is not supported (only 'euler')")
        if self.t_scheduler not in ("cosine", "linear"):
            raise CheckpointError(f"flow cfm: t_scheduler {self.t_scheduler!r} is not supported")


@dataclass(frozen=True)
class EstimatorConfig:
    """ConditionalDecoder (U-Net-like 1-D estimator) hyper-parameters."""

    in_channels: int = 320
    out_channels: int = 80
    channels: tuple[int, ...] = (256, 256)
    attention_head_dim: int = 64
    n_blocks: int = 4
    num_mid_blocks: int = 12
    num_heads: int = 8
    act_fn: str = "gelu"

    def __post_init__(self) -> None:
        if self.act_fn not in ("gelu", "gelu-approximate"):
            raise CheckpointError(f"flow estimator: act_fn {self.act_fn!r} is not supported")


@dataclass(frozen=True)
class FlowConfig:
    """MaskedDiffWithXvec: token embedding, speaker affine, encoder, length regulator, CFM estimator."""

    input_size: int = 512
    output_size: int = 80
    spk_embed_dim: int = 192
    vocab_size: int = 4096
    input_frame_rate: float = 25.0
    sample_rate: int = 22050
    hop_size: int = 256
    encoder: ConformerConfig = field(default_factory=ConformerConfig)
    length_regulator: LengthRegulatorConfig = field(default_factory=LengthRegulatorConfig)
    cfm: CFMConfig = field(default_factory=CFMConfig)
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)

    def mel_len(self, n_tokens: int) -> int:
        """Mel frames for `n_tokens` generated tokens, truncated exactly as the reference does."""
        return int(n_tokens / self.input_frame_rate * self.sample_rate / self.hop_size)


def cosyvoice_300m_config(vocab_size: int = 5120, input_frame_rate: float = 25.0) -> FlowConfig:
    """The CosyVoice-300M flow shape (105M parameters); vocabulary and rate differ per release."""
    return FlowConfig(vocab_size=vocab_size, input_frame_rate=input_frame_rate)


def _pick(section: Mapping[str, Any], cls: type, casts: Mapping[str, Any]) -> dict[str, Any]:
    """Known fields of `cls` present in `section`, cast to the declared plain types."""
    names = {f.name for f in fields(cls)}
    out: dict[str, Any] = {}
    for key, value in section.items():
        if key in names and not isinstance(value, Mapping):
            cast = casts.get(key)
            out[key] = cast(value) if cast is not None and value is not None else value
    return out


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


_CASTS: dict[str, Any] = {
    "input_size": int, "output_size": int, "spk_embed_dim": int, "vocab_size": int,
    "input_frame_rate": float, "sample_rate": int, "hop_size": int, "attention_heads": int,
    "linear_units": int, "num_blocks": int, "normalize_before": bool, "use_cnn_module": bool,
    "macaron_style": bool, "channels": None, "sampling_ratios": _ints, "out_channels": None, "groups": int,
    "sigma_min": float, "inference_cfg_rate": float, "n_timesteps": int, "temperature": float,
    "in_channels": int, "attention_head_dim": int, "n_blocks": int, "num_mid_blocks": int, "num_heads": int,
}


def flow_config_from_sections(
    flow: Mapping[str, Any],
    encoder: Mapping[str, Any],
    length_regulator: Mapping[str, Any],
    cfm: Mapping[str, Any],
    estimator: Mapping[str, Any],
    mel: Mapping[str, Any] | None = None,
) -> FlowConfig:
    """Build the config tree from the five constructor-argument groups of the reference."""
    try:
        regulator = _pick(length_regulator, LengthRegulatorConfig, _CASTS)
        if "channels" in regulator:
            regulator["channels"] = int(regulator["channels"])
        if regulator.get("out_channels") is not None:
            regulator["out_channels"] = int(regulator["out_channels"])
        params = cfm.get("cfm_params", cfm)
        if isinstance(params, Mapping) and set(params) == {"content"}:
            params = params["content"]
        est = _pick(estimator, EstimatorConfig, _CASTS)
        if "channels" in est:
            est["channels"] = _ints(est["channels"])
        if "out_channels" in est:
            est["out_channels"] = int(est["out_channels"])
        top = _pick(flow, FlowConfig, _CASTS)
        if mel:
            if "sampling_rate" in mel:
                top["sample_rate"] = int(mel["sampling_rate"])
            if "hop_size" in mel:
                top["hop_size"] = int(mel["hop_size"])
        return FlowConfig(
            **top,
            encoder=ConformerConfig(**_pick(encoder, ConformerConfig, _CASTS)),
            length_regulator=LengthRegulatorConfig(**regulator),
            cfm=CFMConfig(**_pick(params, CFMConfig, _CASTS)),
            estimator=EstimatorConfig(**est),
        )
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"flow config: unreadable value ({exc})") from exc


def flow_config_from_hparams(path: str | Path) -> FlowConfig:
    """Read the conformance set's `hparams.json` (groups flow / encoder / length_regulator / cfm / estimator)."""
    data = json.loads(Path(path).read_text())
    try:
        return flow_config_from_sections(
            data["flow"], data["encoder"], data["length_regulator"], data["cfm"], data["estimator"]
        )
    except KeyError as exc:
        raise CheckpointError(f"{path}: missing section {exc}") from exc


class _PlainDataLoader(yaml.SafeLoader):
    """SafeLoader that reads HyperPyYAML tags as plain data and YAML 1.2 floats such as `1e-06`."""


class _Ref(str):
    """An unresolved HyperPyYAML `!ref` expression."""


def _construct_tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    value = loader.construct_scalar(node)
    return _Ref(value) if node.tag in ("!ref", "!copy") else value


_PlainDataLoader.add_multi_constructor("!", _construct_tagged)
_PlainDataLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)

_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}


def _arith(node: ast.AST) -> Any:
    """Evaluate a numbers-only arithmetic expression (what `!ref <a> // 2` may contain)."""
    if isinstance(node, ast.Expression):
        return _arith(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_arith(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_arith(node.left), _arith(node.right))
    raise ValueError("not a plain arithmetic expression")


def _lookup(root: Mapping[str, Any], name: str, depth: int) -> Any:
    value: Any = root
    for part in re.findall(r"[^\[\]]+", name):
        if not isinstance(value, Mapping) or part not in value:
            raise CheckpointError(f"cosyvoice.yaml: !ref <{name}> points to nothing")
        value = value[part]
    return _resolve(value, root, depth + 1)


def _resolve(value: Any, root: Mapping[str, Any], depth: int = 0) -> Any:
    if depth > 32:
        raise CheckpointError("cosyvoice.yaml: !ref chain too deep")
    if isinstance(value, _Ref):
        text = value.strip()
        whole = re.fullmatch(r"<([^<>]+)>", text)
        if whole:
            return _lookup(root, whole.group(1), depth)
        expr = re.sub(r"<([^<>]+)>", lambda m: repr(_lookup(root, m.group(1), depth)), text)
        try:
            return _arith(ast.parse(expr, mode="eval"))
        except (SyntaxError, ValueError):
            return expr
    if isinstance(value, Mapping):
        return {k: _resolve(v, root, depth) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, root, depth) for v in value]
    return value


def read_tagged_yaml(text: str) -> dict[str, Any]:
    """Plain data of a HyperPyYAML document: tags dropped, `!ref` resolved, nothing instantiated."""
    try:
        data = yaml.load(text, Loader=_PlainDataLoader)  # a SafeLoader subclass: plain data only
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise CheckpointError(f"cosyvoice.yaml is not valid YAML ({reason}): re-download it") from exc
    if not isinstance(data, dict):
        raise CheckpointError("cosyvoice.yaml: top level is not a mapping")
    resolved = _resolve(data, data)
    assert isinstance(resolved, dict)
    return resolved


def flow_config_from_yaml(source: str | Path) -> FlowConfig:
    """Read the `flow:` section of a real `cosyvoice.yaml` (path or text)."""
    text = Path(source).read_text() if isinstance(source, Path) or "\n" not in source else source
    data = read_tagged_yaml(text)
    flow = data.get("flow")
    if not isinstance(flow, Mapping):
        raise CheckpointError("cosyvoice.yaml: no `flow:` section")
    sections = {}
    for name in ("encoder", "length_regulator", "decoder"):
        section = flow.get(name)
        if not isinstance(section, Mapping):
            raise CheckpointError(f"cosyvoice.yaml: flow has no `{name}:` section")
        sections[name] = section
    estimator = sections["decoder"].get("estimator")
    if not isinstance(estimator, Mapping):
        raise CheckpointError("cosyvoice.yaml: flow.decoder has no `estimator:` section")
    mel = flow.get("mel_feat_conf")
    return flow_config_from_sections(
        flow, sections["encoder"], sections["length_regulator"], sections["decoder"], estimator,
        mel if isinstance(mel, Mapping) else None,
    )
