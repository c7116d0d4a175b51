"""UpsampleConformerEncoderV2: tokens (25 Hz) -> encoder states at the mel rate (50 Hz), offline or chunked.

Offline every frame attends to every frame. Chunked (the reference's `forward_chunk`) each chunk carries
its `pre_lookahead_len` look-ahead tokens, which the pre-lookahead convolution consumes, and attends to the
keys/values of all earlier chunks (no mask, relative positions over the whole cached range). The caches
are an explicit value (`EncoderCache`), returned new each call. Key names follow the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.decoder.cosyvoice1.conformer import FeedForward, LinearInput, rel_position_encoding
from stepaudio.decoder.cosyvoice2.config import EncoderConfig

LAYER_NORM_EPS = 1e-12  # the reference's ConformerEncoderLayer norms


def rel_shift(scores: torch.Tensor) -> torch.Tensor:
    """`[..., T1, 2*T2 - 1]` position scores -> `[..., T1, T2]`, entry (i, j) at distance (T2 - T1 + i) - j.

    The queries are the last T1 of T2 positions (a chunk after T2 - T1 cached keys); position row k of the
    espnet table encodes distance T2 - 1 - k, so (i, j) reads column T1 - 1 - i + j.
    """
    t1, width = scores.shape[-2], scores.shape[-1]
    t2 = (width + 1) // 2
    scores = scores.contiguous()
    stride = list(scores.stride())
    stride[-2] = width - 1
    return scores.as_strided((*scores.shape[:-1], t2), stride, scores.storage_offset() + t1 - 1)


class RelPositionAttention(nn.Module):
    """espnet relative-position attention with Transformer-XL biases and an optional key/value cache."""

    def __init__(self, heads: int, dim: int, key_bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.d_k = dim // heads
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim, bias=key_bias)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(dim, dim)
        self.linear_pos = nn.Linear(dim, dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(heads, self.d_k))

    def forward(
        self,
        x: torch.Tensor,
        pos_emb: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        cache: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x `[B, T1, C]`, pos_emb `[1, 2*T2-1, C]`, cache `[B, H, T2-T1, 2*d_k]` (keys then values on the
        last axis) -> output `[B, T1, C]` and the new cache `[B, H, T2, 2*d_k]` (old keys first)."""
        b, t, _ = x.shape
        q = self.linear_q(x).view(b, t, self.heads, self.d_k)
        k = self.linear_k(x).view(b, t, self.heads, self.d_k).transpose(1, 2)
        v = self.linear_v(x).view(b, t, self.heads, self.d_k).transpose(1, 2)
        if cache is not None and cache.shape[2] > 0:
            k_cache, v_cache = cache.split(self.d_k, dim=-1)
            k = torch.cat([k_cache, k], dim=2)
            v = torch.cat([v_cache, v], dim=2)
        new_cache = torch.cat([k, v], dim=-1)
        p = self.linear_pos(pos_emb).view(1, -1, self.heads, self.d_k).transpose(1, 2)  # [1, H, 2T2-1, dk]
        q_u = (q + self.pos_bias_u).transpose(1, 2)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        ac = torch.matmul(q_u, k.transpose(-2, -1))
        bd = torch.matmul(q_v, p.transpose(-2, -1))
        if bd.shape != ac.shape:
            bd = rel_shift(bd)
        scores = (ac + bd) / math.sqrt(self.d_k)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        attn = torch.softmax(scores, dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, t, self.heads * self.d_k)
        return self.linear_out(out), new_cache


class ConformerLayer(nn.Module):
    """Pre-norm self-attention and feed-forward sub-blocks (no conv module, no macaron)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        dim = config.output_size
        self.self_attn = RelPositionAttention(config.attention_heads, dim, config.key_bias)
        self.feed_forward = FeedForward(dim, config.linear_units, config.activation_type)
        self.norm_mha = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.norm_ff = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.normalize_before = config.normalize_before

    def forward(
        self,
        x: torch.Tensor,
        pos_emb: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        cache: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        residual = x
        h = self.norm_mha(x) if self.normalize_before else x
        att, new_cache = self.self_attn(h, pos_emb, key_mask, cache)
        x = residual + att
        if not self.normalize_before:
            x = self.norm_mha(x)
        residual = x
        h = self.norm_ff(x) if self.normalize_before else x
        x = residual + self.feed_forward(h)
        if not self.normalize_before:
            x = self.norm_ff(x)
        return x, new_cache


class PreLookaheadLayer(nn.Module):
    """conv1 (kernel look-ahead + 1) over the token and its right context, leaky ReLU, causal conv2 (k3),
    residual. Offline the right context is zero padding; chunked it is the chunk's look-ahead tokens."""

    def __init__(self, channels: int, pre_lookahead_len: int) -> None:
        super().__init__()
        self.pre_lookahead_len = pre_lookahead_len
        self.conv1 = nn.Conv1d(channels, channels, pre_lookahead_len + 1)
        self.conv2 = nn.Conv1d(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x `[B, T, C]` -> `[B, T, C]` with zero right context."""
        h = F.pad(x.transpose(1, 2), (0, self.pre_lookahead_len))
        h = F.pad(F.leaky_relu(self.conv1(h)), (2, 0))
        return self.conv2(h).transpose(1, 2) + x

    def forward_chunk(self, x: torch.Tensor, cache: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """x `[B, T + L, C]` (L look-ahead tokens at the end) -> `[B, T, C]` and conv2's left context
        `[B, C, 2]` for the next chunk."""
        h = F.leaky_relu(self.conv1(x.transpose(1, 2)))
        if cache is None:
            cache = h.new_zeros(h.shape[0], h.shape[1], 2)
        h = torch.cat([cache, h], dim=2)
        new_cache = h[..., -2:]
        return self.conv2(h).transpose(1, 2) + x[:, : -self.pre_lookahead_len], new_cache


class Upsample1D(nn.Module):
    """Nearest repeat by `scale_factor`, then a causal conv (kernel 2*stride + 1) with left zero padding."""

    def __init__(self, channels: int, stride: int, scale_factor: float) -> None:
        super().__init__()
        self.stride = stride
        self.scale_factor = float(scale_factor)
        self.conv = nn.Conv1d(channels, channels, stride * 2 + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`[B, C, T]` -> `[B, C, T * stride]`."""
        h = F.interpolate(x, scale_factor=self.scale_factor, mode="nearest")
        return self.conv(F.pad(h, (self.stride * 2, 0)))

    def forward_chunk(self, x: torch.Tensor, cache: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.interpolate(x, scale_factor=self.scale_factor, mode="nearest")
        if cache is None:
            cache = h.new_zeros(h.shape[0], h.shape[1], self.stride * 2)
        h = torch.cat([cache, h], dim=2)
        return self.conv(h), h[..., -self.stride * 2 :]


@dataclass(frozen=True)
class EncoderCache:
    """What a chunk leaves for the next: conv left contexts and every layer's keys/values so far."""

    lookahead: torch.Tensor  # [B, C, 2] conv2 input of the pre-lookahead layer
    upsample: torch.Tensor  # [B, C, 2 * stride] up_layer conv input
    attention: tuple[torch.Tensor, ...]  # per block [B, H, T, 2*d_k]
    up_attention: tuple[torch.Tensor, ...]  # per up block [B, H, T * stride, 2*d_k]

    @property
    def tokens(self) -> int:
        """Tokens encoded so far (look-ahead excluded)."""
        return int(self.attention[0].shape[2]) if self.attention else 0


class UpsampleConformerEncoderV2(nn.Module):
    """Module names follow the reference checkpoint (`embed.out.0`, `pre_lookahead_layer.conv1`, `up_layer.conv`,
    `up_embed`, `up_encoders.N`, `after_norm`)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.output_size
        self.embed = LinearInput(config.input_size, dim)
        self.pre_lookahead_layer = PreLookaheadLayer(dim, config.pre_lookahead_len)
        self.encoders = nn.ModuleList(ConformerLayer(config) for _ in range(config.num_blocks))
        self.up_layer = Upsample1D(dim, config.up_stride, config.up_scale_factor)
        self.up_embed = LinearInput(config.input_size, dim)
        self.up_encoders = nn.ModuleList(ConformerLayer(config) for _ in range(config.num_up_blocks))
        self.after_norm = nn.LayerNorm(dim, eps=1e-5)
        self.xscale = math.sqrt(dim)

    def _pos(self, length: int, x: torch.Tensor) -> torch.Tensor:
        return rel_position_encoding(length, self.config.output_size, x.device, x.dtype)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings `[B, T, C]` -> `[B, T * stride, C]`; `lengths` masks padded keys (None: all valid)."""
        t = x.shape[1]
        key_mask = None
        if lengths is not None and bool((lengths < t).any()):
            key_mask = torch.arange(t, device=x.device)[None, :] < lengths[:, None].to(x.device)
        x = self.embed(x) * self.xscale
        if key_mask is not None:  # the look-ahead conv must see zeros past an item's end, as a single run does
            x = x * key_mask[:, :, None].to(x.dtype)
        x = self.pre_lookahead_layer(x)
        pos = self._pos(t, x)
        for layer in self.encoders:
            x, _ = layer(x, pos, key_mask)
        x = self.up_layer(x.transpose(1, 2)).transpose(1, 2)
        if key_mask is not None:
            key_mask = key_mask.repeat_interleave(self.config.up_stride, dim=1)
        x = self.up_embed(x) * self.xscale
        pos = self._pos(x.shape[1], x)
        for layer in self.up_encoders:
            x, _ = layer(x, pos, key_mask)
        return self.after_norm(x) if self.config.normalize_before else x

    def forward_chunk(
        self, x: torch.Tensor, cache: EncoderCache | None, last_chunk: bool
    ) -> tuple[torch.Tensor, EncoderCache]:
        """One chunk of token embeddings `[B, T + L, C]` (L look-ahead tokens; the last chunk may have none,
        it is zero-padded) -> `[B, T * stride, C]` and the new cache. No attention mask: every frame sees
        all cached frames and its whole chunk, as in the reference."""
        x = self.embed(x) * self.xscale
        if last_chunk:
            x = F.pad(x, (0, 0, 0, self.config.pre_lookahead_len))
        x, lookahead = self.pre_lookahead_layer.forward_chunk(x, None if cache is None else cache.lookahead)
        offset = 0 if cache is None else cache.tokens
        pos = self._pos(offset + x.shape[1], x)
        attention = []
        for i, layer in enumerate(self.encoders):
            x, new = layer(x, pos, None, None if cache is None else cache.attention[i])
            attention.append(new)
        x, upsample = self.up_layer.forward_chunk(x.transpose(1, 2), None if cache is None else cache.upsample)
        x = self.up_embed(x.transpose(1, 2)) * self.xscale
        up_offset = 0 if cache is None or not cache.up_attention else int(cache.up_attention[0].shape[2])
        pos = self._pos(up_offset + x.shape[1], x)
        up_attention = []
        for i, layer in enumerate(self.up_encoders):
            x, new = layer(x, pos, None, None if cache is None else cache.up_attention[i])
            up_attention.append(new)
        if self.config.normalize_before:
            x = self.after_norm(x)
        return x, EncoderCache(lookahead, upsample, tuple(attention), tuple(up_attention))
