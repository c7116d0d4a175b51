"""Typed configuration of the CosyVoice2-style flow, read from the release's hyperpyyaml `flow.yaml`.

The yaml names classes with `!new:` tags; we never construct them. The tags are kept (as `YamlTagged`) so
that a file of another family (a v1 `MaskedDiffWithXvec`, a U-Net estimator) is refused by name instead
of loaded into the wrong model. HiFT has no yaml in the Step-Audio 2 release (`HiFTGenerator()` defaults):
its sizes come from `hift24k_config` or from the weights themselves (`hift_loading`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from stepaudio.decoder.cosyvoice1.hift_config import (
    F0PredictorConfig,
    HiFTConfig,
    YamlTagged,
    load_hyperpyyaml,
    read_yaml_text,
)
from stepaudio.errors import CheckpointError

FLOW_CLASS = "CausalMaskedDiffWithXvec"
ENCODER_CLASS = "UpsampleConformerEncoderV2"
CFM_CLASS = "CausalConditionalCFM"
ESTIMATOR_CLASS = "DiT"


@dataclass(frozen=True)
class EncoderConfig:
    """UpsampleConformerEncoderV2: linear embed, pre-lookahead convs, blocks, nearest x2 + conv, blocks."""

    input_size: int = 512
    output_size: int = 512
    pre_lookahead_len: int = 3
    num_blocks: int = 6
    num_up_blocks: int = 4
    up_stride: int = 2
    up_scale_factor: float = 2.0
    attention_heads: int = 8
    linear_units: int = 2048
    key_bias: bool = True
    normalize_before: bool = True
    activation_type: str = "swish"
    input_layer: str = "linear"
    pos_enc_layer_type: str = "rel_pos_espnet"
    selfattention_layer_type: str = "rel_selfattn"

    def __post_init__(self) -> None:
        wanted = {"input_layer": "linear", "pos_enc_layer_type": "rel_pos_espnet",
                  "selfattention_layer_type": "rel_selfattn"}
        for name, value in wanted.items():
            if getattr(self, name) != value:
                raise CheckpointError(f"flow encoder: {name}={getattr(self, name)!r} is not supported (only {value!r})")
        if self.activation_type not in ("swish", "relu", "gelu"):
            raise CheckpointError(f"flow encoder: activation_type={self.activation_type!r} is not supported")
        if self.output_size % self.attention_heads:
            raise CheckpointError("flow encoder: output_size must be divisible by attention_heads")
        if self.input_size != self.output_size:
            # the reference builds up_embed with input_size but feeds it output_size features
            raise CheckpointError("flow encoder: input_size must equal output_size (the up_embed layer takes both)")
        if self.pre_lookahead_len < 1 or self.up_stride < 1:
            raise CheckpointError("flow encoder: pre_lookahead_len and up_stride must be positive")


@dataclass(frozen=True)
class DiTConfig:
    """DiT estimator: in_proj, `depth` adaLN blocks (attention with q/k LayerNorm, causal conv, MLP), final."""

    in_channels: int = 320
    out_channels: int = 80
    mlp_ratio: float = 4.0
    depth: int = 16
    num_heads: int = 8
    head_dim: int = 64
    hidden_size: int = 512
    frequency_embedding_size: int = 256

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)


@dataclass(frozen=True)
class CFMConfig:
    """CausalConditionalCFM: Euler steps on a cosine schedule with classifier-free guidance."""

    inference_cfg_rate: float = 0.7
    n_timesteps: int = 10

    def __post_init__(self) -> None:
        if self.inference_cfg_rate <= 0:
            raise CheckpointError("flow cfm: inference_cfg_rate must be > 0 (the reference asserts it)")
        if self.n_timesteps < 1:
            raise CheckpointError("flow cfm: n_timesteps must be positive")


@dataclass(frozen=True)
class FlowConfig:
    """CausalMaskedDiffWithXvec: token embedding, speaker affine, encoder, encoder_proj, CFM + DiT."""

    input_size: int = 512
    output_size: int = 80
    spk_embed_dim: int = 192
    vocab_size: int = 6561
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    estimator: DiTConfig = field(default_factory=DiTConfig)
    cfm: CFMConfig = field(default_factory=CFMConfig)

    def __post_init__(self) -> None:
        if self.encoder.input_size != self.input_size:
            raise CheckpointError("flow: input_size differs from encoder.input_size")
        wanted_in = 4 * self.output_size
        if self.estimator.in_channels != wanted_in or self.estimator.out_channels != self.output_size:
            raise CheckpointError(
                f"flow: estimator takes [x, mu, spk, cond] ({wanted_in} channels) and returns {self.output_size}, "
                f"got in {self.estimator.in_channels} / out {self.estimator.out_channels}"
            )

    @property
    def up_rate(self) -> int:
        """Mel frames per token (2 for Step-Audio 2: 25 Hz tokens, 50 Hz mel)."""
        return self.encoder.up_stride

    @property
    def pre_lookahead_len(self) -> int:
        return self.encoder.pre_lookahead_len


def _kwargs(cls: type, node: Any, where: str) -> dict[str, Any]:
    """Plain constructor arguments of a tagged node that `cls` knows, cast to the field's type."""
    if not isinstance(node, Mapping):
        raise CheckpointError(f"flow.yaml: {where} is not a mapping")
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in node or isinstance(node[f.name], (Mapping, YamlTagged)):
            continue
        value = node[f.name]
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        try:
            out[f.name] = {"int": int, "float": float, "bool": bool, "str": str}.get(kind, lambda v: v)(value)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"flow.yaml: {where}.{f.name}={value!r} is unreadable ({exc})") from exc
    return out


def _tagged(node: Any, class_name: str, where: str) -> Mapping[str, Any]:
    """The arguments of a `!new:...<class_name>` node; CheckpointError naming the class found otherwise."""
    if not isinstance(node, YamlTagged):
        raise CheckpointError(f"flow.yaml: {where} is not a `!new:` object (expected {class_name})")
    found = node.tag.rsplit(".", 1)[-1]
    if found != class_name:
        raise CheckpointError(f"flow.yaml: {where} is {node.tag!r}, this decoder family needs {class_name}")
    if not isinstance(node.value, Mapping):
        raise CheckpointError(f"flow.yaml: {where} ({class_name}) has no arguments mapping")
    return node.value


def flow_config_from_tree(tree: Mapping[str, Any]) -> FlowConfig:
    """The `flow:` node of a parsed flow.yaml -> FlowConfig (classes checked by tag)."""
    flow = _tagged(tree.get("flow"), FLOW_CLASS, "flow")
    encoder = _tagged(flow.get("encoder"), ENCODER_CLASS, "flow.encoder")
    decoder = _tagged(flow.get("decoder"), CFM_CLASS, "flow.decoder")
    estimator = _tagged(decoder.get("estimator"), ESTIMATOR_CLASS, "flow.decoder.estimator")
    if flow.get("output_type", "mel") != "mel":
        raise CheckpointError(f"flow.yaml: output_type {flow.get('output_type')!r} is not supported (only 'mel')")
    return FlowConfig(
        **_kwargs(FlowConfig, flow, "flow"),
        encoder=EncoderConfig(**_kwargs(EncoderConfig, encoder, "flow.encoder")),
        estimator=DiTConfig(**_kwargs(DiTConfig, estimator, "flow.decoder.estimator")),
        cfm=CFMConfig(**_kwargs(CFMConfig, decoder, "flow.decoder")),
    )


def flow_config_from_yaml(source: str | Path) -> FlowConfig:
    """Read a `flow.yaml` (a path, or the yaml text itself)."""
    return flow_config_from_tree(load_hyperpyyaml(read_yaml_text(source, "flow.yaml")))


def hift24k_config(base_channels: int = 512, f0_channels: int = 512, nb_harmonics: int = 8) -> HiFTConfig:
    """The reference's `HiFTGenerator()` defaults at 24 kHz: rates [8, 5, 3], kernels [16, 11, 7], iSTFT 16/4
    (480 samples per mel frame), source resblocks [7, 7, 11]; only the widths vary (tiny test models)."""
    return HiFTConfig(
        base_channels=base_channels,
        nb_harmonics=nb_harmonics,
        sampling_rate=24000,
        upsample_rates=(8, 5, 3),
        upsample_kernel_sizes=(16, 11, 7),
        n_fft=16,
        hop_len=4,
        source_resblock_kernel_sizes=(7, 7, 11),
        source_resblock_dilation_sizes=((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        f0_predictor=F0PredictorConfig(cond_channels=f0_channels),
    )
