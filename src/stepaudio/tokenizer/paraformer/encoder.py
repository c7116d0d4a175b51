"""Paraformer-online encoder (SANMEncoderChunkOpt), streaming forward only.

One call encodes one chunk of LFR features. What streaming needs from the past lives in an
explicit :class:`EncoderCache` that the call takes and returns (the module itself holds only
weights): the running position index, the last embedded frames that are prepended as overlap,
and per layer the keys/values of recent positions (look-back). Module names follow the real
checkpoint (``encoders0.0.self_attn.linear_q_k_v`` ...), so loading is a prefix strip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ChunkConfig",
    "EncoderCache",
    "ParaformerEncoder",
    "ParaformerEncoderConfig",
    "stream_position_encoding",
]

LAYER_NORM_EPS = 1e-12  # the reference LayerNorm subclass


@dataclass(frozen=True)
class ParaformerEncoderConfig:
    """The ``encoder_conf`` numbers that shape the weights (real model: 560, 512, 4, 2048, 50)."""

    input_size: int = 560
    output_size: int = 512
    attention_heads: int = 4
    linear_units: int = 2048
    num_blocks: int = 50
    kernel_size: int = 11
    sanm_shfit: int = 0
    normalize_before: bool = True

    def __post_init__(self) -> None:
        if self.output_size % self.attention_heads:
            raise ValueError(f"output_size {self.output_size} not divisible by {self.attention_heads} heads")
        if self.num_blocks < 1:
            raise ValueError("num_blocks must be at least 1")


@dataclass(frozen=True)
class ChunkConfig:
    """Streaming call arguments: ``chunk_size`` [left, chunk, right] and the encoder look-back."""

    chunk_size: tuple[int, int, int] = (0, 4, 5)
    look_back: int = 4

    def __post_init__(self) -> None:
        if len(self.chunk_size) != 3 or self.chunk_size[1] < 1 or self.chunk_size[2] < 1 or self.chunk_size[0] < 0:
            raise ValueError(f"chunk_size must be [left >= 0, chunk >= 1, right >= 1], got {self.chunk_size}")
        if self.look_back < -1:
            raise ValueError(f"look_back must be >= -1 (-1: unlimited), got {self.look_back}")

    @property
    def overlap(self) -> int:
        return self.chunk_size[0] + self.chunk_size[2]

    @property
    def cache_positions(self) -> int:
        return self.look_back * self.chunk_size[1]


@dataclass(frozen=True)
class EncoderCache:
    """Streaming state of one utterance; ``kv`` is empty until the first chunk."""

    start_idx: int
    overlap: torch.Tensor  # [1, overlap, input_size] embedded frames of the previous chunk
    kv: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()


def stream_position_encoding(start: int, length: int, depth: int, dtype: torch.dtype) -> torch.Tensor:
    """Sinusoids ``[sin | cos]`` for positions ``start+1 .. start+length`` (positions start at 1)."""
    positions = torch.arange(start + 1, start + length + 1).to(dtype)
    increment = torch.log(torch.tensor([10000.0], dtype=dtype)) / (depth / 2 - 1)
    inv_timescales = torch.exp(torch.arange(depth // 2).to(dtype) * -increment)
    scaled = positions[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


class SanmAttention(nn.Module):
    """Multi-head attention over [cache, chunk] plus an FSMN memory (depthwise conv over V)."""

    def __init__(self, in_size: int, size: int, heads: int, kernel_size: int, sanm_shfit: int) -> None:
        super().__init__()
        self.heads = heads
        self.d_k = size // heads
        self.linear_q_k_v = nn.Linear(in_size, 3 * size)
        self.linear_out = nn.Linear(size, size)
        self.fsmn_block = nn.Conv1d(size, size, kernel_size, groups=size, bias=False)
        left = (kernel_size - 1) // 2 + max(sanm_shfit, 0)
        self.padding = (left, kernel_size - 1 - left)

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None, key_bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (attention + memory, K, V) with K/V ``[b, heads, past + t, d_k]``: the look-back then this chunk.

        ``key_bias`` (added to the scores, -inf for padded look-back positions) lets a short look-back run in
        the shape of a full one."""
        b, t, _ = x.shape
        q, k, v = self.linear_q_k_v(x).split(self.heads * self.d_k, dim=-1)
        q_h, k_h, v_h = (z.reshape(b, t, self.heads, self.d_k).transpose(1, 2) for z in (q, k, v))
        # depthwise conv over time as one unfold-multiply-sum: ~2x faster than conv1d at 9 frames
        taps = F.pad(v, (0, 0, *self.padding)).unfold(1, self.fsmn_block.kernel_size[0], 1)
        memory = (taps * self.fsmn_block.weight[:, 0, :]).sum(-1) + v
        keys, values = k_h, v_h
        if past is not None:
            keys = torch.cat([past[0], k_h], dim=2)
            values = torch.cat([past[1], v_h], dim=2)
        scores = torch.matmul(q_h * self.d_k**-0.5, keys.transpose(-2, -1))
        if key_bias is not None:
            scores = scores + key_bias
        context = torch.matmul(torch.softmax(scores, dim=-1), values)
        context = context.transpose(1, 2).reshape(b, t, self.heads * self.d_k)
        return self.linear_out(context) + memory, keys, values


class FeedForward(nn.Module):
    def __init__(self, size: int, units: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(size, units)
        self.w_2 = nn.Linear(units, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(torch.relu(self.w_1(x)))


class SanmLayer(nn.Module):
    """Pre-norm SANM block; no residual around attention when the input width differs (first layer)."""

    def __init__(self, in_size: int, config: ParaformerEncoderConfig) -> None:
        super().__init__()
        size = config.output_size
        self.residual_attention = in_size == size
        self.normalize_before = config.normalize_before
        self.norm1 = nn.LayerNorm(in_size, eps=LAYER_NORM_EPS)
        self.norm2 = nn.LayerNorm(size, eps=LAYER_NORM_EPS)
        self.self_attn = SanmAttention(
            in_size, size, config.attention_heads, config.kernel_size, config.sanm_shfit
        )
        self.feed_forward = FeedForward(size, config.linear_units)

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None, key_bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        attn, keys, values = self.self_attn(self.norm1(x) if self.normalize_before else x, past, key_bias)
        x = x + attn if self.residual_attention else attn
        if not self.normalize_before:
            x = self.norm1(x)
        y = x + self.feed_forward(self.norm2(x) if self.normalize_before else x)
        if not self.normalize_before:
            y = self.norm2(y)
        return y, keys, values


class ParaformerEncoder(nn.Module):
    """SANMEncoderChunkOpt with the ``pe_online`` input layer; weights only, state in EncoderCache."""

    def __init__(self, config: ParaformerEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoders0 = nn.ModuleList([SanmLayer(config.input_size, config)])
        self.encoders = nn.ModuleList([SanmLayer(config.output_size, config) for _ in range(config.num_blocks - 1)])
        self.after_norm = nn.LayerNorm(config.output_size, eps=LAYER_NORM_EPS)
        # optional runner of steady streaming steps (paraformer.compiled.CompiledSteadyStep); not weights
        self.steady_step: Any = None

    @property
    def layers(self) -> list[SanmLayer]:
        return [*self.encoders0, *self.encoders]

    def new_cache(
        self, chunk: ChunkConfig, device: torch.device | None = None, dtype: torch.dtype = torch.float32
    ) -> EncoderCache:
        overlap = torch.zeros(1, chunk.overlap, self.config.input_size, device=device, dtype=dtype)
        return EncoderCache(start_idx=0, overlap=overlap)

    def forward_chunk(
        self, feats: torch.Tensor, cache: EncoderCache, chunk: ChunkConfig
    ) -> tuple[torch.Tensor, EncoderCache]:
        """Encode ``[1, f, input_size]`` features; returns ``[1, overlap + f, output_size]`` and the new cache.

        The last ``f`` output frames belong to this chunk; the first ``overlap`` re-encode the end
        of the previous chunk (the reference returns them too).
        """
        length = feats.shape[1]
        x = feats * math.sqrt(self.config.output_size)
        x = x + stream_position_encoding(cache.start_idx, length, feats.shape[2], x.dtype).to(x.device)
        x = torch.cat([cache.overlap.to(x), x], dim=1)
        overlap = x[:, -chunk.overlap :]
        keep = x.shape[1] - chunk.chunk_size[2]
        compiled = None
        if self.steady_step is not None:
            compiled = self.steady_step(x, cache.kv, chunk.cache_positions)
        if compiled is not None:
            x, layer_kv = compiled
        else:
            layer_kv = []
            for i, layer in enumerate(self.layers):
                x, keys, values = layer(x, cache.kv[i] if cache.kv else None)
                layer_kv.append((keys, values))
        # the next look-back: the past plus this chunk's first `keep` frames, trimmed to its length; views of
        # the attention's own concatenation, so nothing is copied twice
        end = keep + (cache.kv[0][0].shape[2] if cache.kv else 0)
        start = 0 if not cache.kv or chunk.look_back < 0 else max(0, end - chunk.cache_positions)
        new_kv = [] if chunk.look_back == 0 else [(k[:, :, start:end], v[:, :, start:end]) for k, v in layer_kv]
        if self.config.normalize_before:
            x = self.after_norm(x)
        return x, EncoderCache(start_idx=cache.start_idx + length, overlap=overlap, kv=tuple(new_kv))
