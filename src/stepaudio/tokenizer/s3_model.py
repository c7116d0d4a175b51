"""A torch model with the shape and signature of CosyVoice's ``speech_tokenizer_v1.onnx`` (25 Hz).

The real vq06 tokenizer ships only as an ONNX graph. Tests and benchmarks need files with the same
signature and cost, so this module builds the architecture with random weights and exports it:
a Whisper-style audio encoder over 128-bin log-mel (two k=3 convolutions with GELU, both stride 2:
100 Hz mel -> 25 Hz; sinusoidal positions; pre-norm attention blocks with a 4x GELU MLP, no bias on
the key projection, no final norm), then a vector quantiser that L2-normalises each frame and takes
the nearest of 4096 codewords. Inputs ``feats [B, n_mels, T] float32`` and ``feats_length [B] int32``
(frames past a length are masked), output ``indices [B, 1, T']`` int64, as the real file.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["INPUT_NAMES", "OUTPUT_NAMES", "S3Config", "S3Tokenizer", "code_count", "export_s3_onnx", "random_s3"]

INPUT_NAMES = ("feats", "feats_length")
OUTPUT_NAMES = ("indices",)


@dataclass(frozen=True)
class S3Config:
    """Defaults are the real v1 25 Hz shape (about 130M parameters)."""

    n_mels: int = 128
    n_ctx: int = 1500
    n_state: int = 1280
    n_head: int = 20
    n_layer: int = 6
    codebook_size: int = 4096
    conv1_stride: int = 2

    def __post_init__(self) -> None:
        if self.n_state % self.n_head or self.n_state % 2:
            raise ValueError(f"n_state {self.n_state} must be even and divisible by n_head {self.n_head}")


def code_count(mel_frames: int, conv1_stride: int = 2) -> int:
    """Codes the encoder yields for ``mel_frames`` frames (k=3, padding 1 convolutions)."""
    t1 = (mel_frames - 1) // conv1_stride + 1
    return (t1 - 1) // 2 + 1


def _sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-increment * torch.arange(channels // 2, dtype=torch.float32))
    angle = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([angle.sin(), angle.cos()], dim=1)


class _Attention(nn.Module):
    def __init__(self, n_state: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (proj(x).view(b, t, self.n_head, -1).transpose(1, 2) for proj in (self.query, self.key, self.value))
        scores = q @ k.transpose(-1, -2) * (d // self.n_head) ** -0.5 + bias
        return self.out((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d))


class _Block(nn.Module):
    def __init__(self, n_state: int, n_head: int) -> None:
        super().__init__()
        self.attn_ln = nn.LayerNorm(n_state)
        self.attn = _Attention(n_state, n_head)
        self.mlp_ln = nn.LayerNorm(n_state)
        self.mlp = nn.Sequential(nn.Linear(n_state, 4 * n_state), nn.GELU(), nn.Linear(4 * n_state, n_state))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x), bias)
        return x + self.mlp(self.mlp_ln(x))


def _valid(lengths: torch.Tensor, size: int) -> torch.Tensor:
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


class S3Tokenizer(nn.Module):
    """Encoder + quantiser; ``forward(feats, feats_length) -> indices [B, 1, T']``."""

    def __init__(self, config: S3Config) -> None:
        super().__init__()
        self.config = config
        c = config
        self.conv1 = nn.Conv1d(c.n_mels, c.n_state, kernel_size=3, stride=c.conv1_stride, padding=1)
        self.conv2 = nn.Conv1d(c.n_state, c.n_state, kernel_size=3, stride=2, padding=1)
        self.positional_embedding: torch.Tensor
        self.register_buffer("positional_embedding", _sinusoids(c.n_ctx, c.n_state), persistent=True)
        self.blocks = nn.ModuleList(_Block(c.n_state, c.n_head) for _ in range(c.n_layer))
        self.codebook: torch.Tensor
        self.register_buffer("codebook", torch.zeros(c.codebook_size, c.n_state), persistent=True)

    def encode(self, feats: torch.Tensor, feats_length: torch.Tensor) -> torch.Tensor:
        """Hidden states ``[B, T', n_state]`` before quantisation."""
        lengths = feats_length.to(torch.int64)
        x = F.gelu(self.conv1(feats * _valid(lengths, feats.shape[-1])[:, None, :]))
        lengths = (lengths - 1) // self.config.conv1_stride + 1
        x = F.gelu(self.conv2(x * _valid(lengths, x.shape[-1])[:, None, :]))
        lengths = (lengths - 1) // 2 + 1
        x = x.transpose(1, 2)
        valid = _valid(lengths, x.shape[1])
        bias = (1.0 - valid.to(x.dtype))[:, None, None, :] * -1.0e10
        x = x + self.positional_embedding[: x.shape[1]]
        for block in self.blocks:
            x = block(x, bias)
        return x

    def forward(self, feats: torch.Tensor, feats_length: torch.Tensor) -> torch.Tensor:
        hidden = F.normalize(self.encode(feats, feats_length), p=2.0, dim=-1)
        codebook = self.codebook
        dist = (hidden * hidden).sum(-1, keepdim=True) - 2.0 * hidden @ codebook.T + (codebook * codebook).sum(-1)
        return dist.argmin(-1)[:, None, :]


def random_s3(config: S3Config, seed: int = 0) -> S3Tokenizer:
    """Random weights scaled so activations stay O(1) at any width; codewords on the unit sphere."""
    generator = torch.Generator().manual_seed(seed)
    model = S3Tokenizer(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("ln.weight"):
                param.copy_(1.0 + 0.1 * noise)
            elif param.dim() == 1:
                param.copy_(0.02 * noise)
            else:
                param.copy_(noise / math.sqrt(param[0].numel()))
        model.codebook.copy_(F.normalize(torch.randn(tuple(model.codebook.shape), generator=generator), dim=-1))
    return model.eval()


def export_s3_onnx(
    path: str | Path,
    config: S3Config | None = None,
    seed: int = 0,
    opset: int = 17,
    model: S3Tokenizer | None = None,
) -> Path:
    """Write a random-weight model (or ``model``) with the real file's inputs, output and dynamic time axis."""
    if model is None:
        model = random_s3(config or S3Config(), seed)
    config = model.config
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = 200
    example = (torch.zeros(1, config.n_mels, frames), torch.tensor([frames], dtype=torch.int32))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        torch.onnx.export(
            model,
            example,
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={"feats": {0: "batch", 2: "frames"}, "feats_length": {0: "batch"},
                          "indices": {0: "batch", 2: "codes"}},
            opset_version=opset,
            dynamo=False,
        )
    return path
