"""Step-Audio-EditX's decoder (`CosyVoice-300M-25Hz/` inside the EditX folder): this family's causal flow and
24 kHz HiFT over the v1 dual-codebook tokens. REFERENCE-EDITX.md §6.

What differs from Step-Audio 2's token2wav, all of it here: the config is one `cosyvoice.yaml` (`flow:`, `hift:`
and `mel_conf:` nodes; HiFT sizes come from it, not from the weights); the interleaved 2+3 ids are regrouped
into time-aligned frame pairs (`dual_frames`: `[a0, b0+1] [a1, b1+1] [1024, b2+1]` per group, vq06 shifted by
1025) and embedded by `DualCodebookEmbedding` (one half-width table looked up for both columns, concatenated;
key `input_embedding.embedding.weight`). Everything after the embedding is the shared flow and HiFT24k.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stepaudio.decoder.cosyvoice1.flow_loading import read_state_dict
from stepaudio.decoder.cosyvoice1.hift_config import HiFTConfig, YamlTagged, load_hyperpyyaml, read_yaml_text
from stepaudio.decoder.cosyvoice2.config import FlowConfig, flow_config_from_tree
from stepaudio.decoder.cosyvoice2.flow import CausalMaskedDiffWithXvec
from stepaudio.errors import CheckpointError

EMBEDDING_CLASS = "DualCodebookEmbedding"
HIFT_CLASS = "HiFTGenerator"
VQ02_PAD = 1024  # the frame with no vq02 code (third frame of each group)
VQ06_SHIFT = 1  # flow id 1024 + c -> 1025 + c
GROUP_PAD = (0, 0, 0, 1024, 1024, 1024)  # the reference completes a partial last group from the tail of this


def dual_frames(flow_ids: Sequence[int]) -> torch.Tensor:
    """Interleaved flow ids (vq02 c, vq06 1024 + c) -> frame pairs `[3 * groups, 2]` int64 (the reference's
    `_reshape`); a partial last group is completed with the last `5 - r` items of `GROUP_PAD`."""
    ids = [int(i) for i in flow_ids]
    remainder = len(ids) % 5
    if remainder:
        ids += list(GROUP_PAD[remainder - 5 :])
    frames: list[list[int]] = []
    for g in range(0, len(ids), 5):
        a0, a1, b0, b1, b2 = ids[g : g + 5]
        frames += [[a0, b0 + VQ06_SHIFT], [a1, b1 + VQ06_SHIFT], [VQ02_PAD, b2 + VQ06_SHIFT]]
    return torch.tensor(frames, dtype=torch.int64).reshape(-1, 2)


class DualCodebookEmbedding(nn.Module):
    """Frame pairs `[B, T, 2]` -> `[B, T, input_size]`: both columns looked up in one half-width table."""

    def __init__(self, vocab_size: int, input_size: int) -> None:
        super().__init__()
        if input_size % 2:
            raise CheckpointError(f"flow: DualCodebookEmbedding needs an even input_size, got {input_size}")
        self.embedding = nn.Embedding(vocab_size, input_size // 2)

    @property
    def weight(self) -> torch.Tensor:
        """The table (where callers ask the flow for its device and dtype)."""
        return self.embedding.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.embedding(tokens[..., 0]), self.embedding(tokens[..., 1])], dim=-1)


class EditXFlow(CausalMaskedDiffWithXvec):
    """The shared causal flow with the dual-codebook embedding; tokens are frame pairs `[1, T, 2]`."""

    def __init__(self, config: FlowConfig) -> None:
        super().__init__(config)
        self.input_embedding = DualCodebookEmbedding(config.vocab_size, config.input_size)  # type: ignore[assignment]


@dataclass(frozen=True)
class MelConfig:
    """`mel_conf` of cosyvoice.yaml: the matcha log-mel of the prompt audio."""

    n_fft: int = 1920
    num_mels: int = 80
    sampling_rate: int = 24000
    hop_size: int = 480
    win_size: int = 1920
    fmin: float = 0.0
    fmax: float | None = 8000.0

    def __post_init__(self) -> None:
        if min(self.n_fft, self.num_mels, self.sampling_rate, self.hop_size, self.win_size) <= 0:
            raise CheckpointError(f"cosyvoice.yaml: mel_conf has a non-positive size ({self})")


@dataclass(frozen=True)
class EditXDecoderConfig:
    flow: FlowConfig
    hift: HiFTConfig
    mel: MelConfig

    def __post_init__(self) -> None:
        if self.mel.num_mels != self.flow.output_size or self.hift.in_channels != self.flow.output_size:
            raise CheckpointError(f"cosyvoice.yaml: mel_conf ({self.mel.num_mels}), flow ({self.flow.output_size}) "
                                  f"and hift ({self.hift.in_channels}) disagree on mel bins")
        if self.hift.sampling_rate != 24000 or self.hift.upsample_total != 480:
            raise CheckpointError(f"cosyvoice.yaml: HiFT at {self.hift.sampling_rate} Hz with "
                                  f"{self.hift.upsample_total} samples a frame; this decoder is 24 kHz / 480")
        if self.mel.sampling_rate != self.hift.sampling_rate or self.mel.hop_size != self.hift.upsample_total:
            raise CheckpointError("cosyvoice.yaml: the prompt mel (mel_conf) and HiFT disagree on rate or hop")


def _class_of(node: Any, where: str, wanted: str) -> YamlTagged:
    if not isinstance(node, YamlTagged):
        raise CheckpointError(f"cosyvoice.yaml: {where} is not a `!new:` object (expected {wanted})")
    found = node.tag.rsplit(".", 1)[-1]
    if found != wanted:
        hint = " (a BigVGAN vocoder is not supported)" if found == "BigVGAN" else ""
        raise CheckpointError(f"cosyvoice.yaml: {where} is {node.tag!r}, EditX's decoder needs {wanted}{hint}")
    return node


def editx_config_from_tree(tree: Mapping[str, Any]) -> EditXDecoderConfig:
    """Parsed cosyvoice.yaml -> config; the classes are checked by tag (a v1 yaml is refused by name)."""
    flow = flow_config_from_tree(tree)
    flow_node = tree["flow"].value
    embedding = _class_of(flow_node.get("input_embedding"), "flow.input_embedding", EMBEDDING_CLASS)
    args = embedding.value if isinstance(embedding.value, Mapping) else {}
    if int(args.get("vocab_size", flow.vocab_size)) != flow.vocab_size or int(
            args.get("input_size", flow.input_size)) != flow.input_size:
        raise CheckpointError("cosyvoice.yaml: flow.input_embedding sizes differ from the flow's")
    hift_node = _class_of(tree.get("hift"), "hift", HIFT_CLASS)
    try:
        hift = HiFTConfig.from_dict(_untagged(hift_node))
    except (TypeError, KeyError) as exc:
        raise CheckpointError(f"cosyvoice.yaml: the hift node is unreadable ({exc})") from exc
    mel_node = tree.get("mel_conf")
    if not isinstance(mel_node, Mapping):
        raise CheckpointError("cosyvoice.yaml: no mel_conf mapping (the prompt mel settings)")
    known = MelConfig.__dataclass_fields__
    try:
        mel = MelConfig(**{k: v for k, v in mel_node.items() if k in known})
    except TypeError as exc:
        raise CheckpointError(f"cosyvoice.yaml: mel_conf is unreadable ({exc})") from exc
    return EditXDecoderConfig(flow=flow, hift=hift, mel=mel)


def _untagged(value: Any) -> Any:
    """A yaml node with its `!new:` tags dropped: the constructor arguments as plain data."""
    if isinstance(value, YamlTagged):
        return _untagged(value.value)
    if isinstance(value, Mapping):
        return {k: _untagged(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untagged(v) for v in value]
    return value


def editx_config_from_yaml(source: str | Path) -> EditXDecoderConfig:
    """Read a `cosyvoice.yaml` (a path, or the yaml text itself)."""
    return editx_config_from_tree(load_hyperpyyaml(read_yaml_text(source, "cosyvoice.yaml")))


def editx_flow_key_shapes(config: FlowConfig) -> dict[str, tuple[int, ...]]:
    """Checkpoint key -> expected shape (the model built on the meta device)."""
    with torch.device("meta"):
        model = EditXFlow(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def load_editx_flow(
    weights: str | Path | Mapping[str, torch.Tensor],
    config: FlowConfig,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> EditXFlow:
    """Build the flow, fill it from `flow.pt` (names as the reference's; each shape checked), eval mode."""
    source = weights if isinstance(weights, Mapping) else read_state_dict(weights)
    expected = editx_flow_key_shapes(config)
    state: dict[str, torch.Tensor] = {}
    for key, shape in expected.items():
        if key not in source:
            hint = " (a Step-Audio 2 flow.pt? its embedding is `input_embedding.weight`)" if (
                key == "input_embedding.embedding.weight" and "input_embedding.weight" in source) else ""
            raise CheckpointError(f"EditX flow checkpoint: missing key {key!r} (expected shape {shape}){hint}")
        if tuple(source[key].shape) != shape:
            raise CheckpointError(f"EditX flow checkpoint: key {key!r} has shape {tuple(source[key].shape)}, "
                                  f"cosyvoice.yaml implies {shape}")
        state[key] = source[key]
    extra = sorted(set(source) - set(expected))
    if extra:
        raise CheckpointError(f"EditX flow checkpoint: unexpected keys {extra[:5]}{' ...' if len(extra) > 5 else ''}"
                              " (is cosyvoice.yaml the one shipped with these weights?)")
    with torch.device("meta"):
        model = EditXFlow(config)
    model.load_state_dict(state, assign=True)
    return model.to(device=device, dtype=dtype).eval()
