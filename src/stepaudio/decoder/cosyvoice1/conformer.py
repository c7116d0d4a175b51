"""Conformer encoder of the flow decoder: linear input layer, espnet relative positions, pre-norm blocks.

Only the variant CosyVoice-1 uses: no convolution module, no macaron feed-forward. Key names follow
the reference (`embed.out.0`, `encoders.N.self_attn.linear_pos`, `pos_bias_u`, ...).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.decoder.cosyvoice1.flow_config import ConformerConfig


def rel_position_encoding(length: int, d_model: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """espnet relative encoding `[1, 2T-1, d]`: row k encodes the relative distance `T-1-k`."""
    rel = torch.arange(length - 1, -length, -1, dtype=torch.float32, device=device).unsqueeze(1)
    div = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32, device=device) * -(math.log(10000.0) / d_model)
    )
    angle = rel * div
    pe = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).reshape(2 * length - 1, d_model)
    return pe.unsqueeze(0).to(dtype)


def rel_shift(scores: torch.Tensor) -> torch.Tensor:
    """`[..., T, 2T-1]` position scores -> `[..., T, T]` with entry (i, j) taken at distance i - j."""
    t = scores.shape[-2]
    scores = scores.contiguous()
    stride = list(scores.stride())
    stride[-2] = 2 * t - 2
    return scores.as_strided(
        (*scores.shape[:-1], t), stride, scores.storage_offset() + t - 1
    )


class RelPositionAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL biases u (content) and v (position)."""

    def __init__(self, heads: int, dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.d_k = dim // heads
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(dim, dim)
        self.linear_pos = nn.Linear(dim, dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(heads, self.d_k))

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.linear_q(x).view(b, t, self.heads, self.d_k)
        k = self.linear_k(x).view(b, t, self.heads, self.d_k).transpose(1, 2)
        v = self.linear_v(x).view(b, t, self.heads, self.d_k).transpose(1, 2)
        p = self.linear_pos(pos_emb).view(-1, self.heads, self.d_k).transpose(0, 1)  # [H, 2T-1, dk]
        q_u = (q + self.pos_bias_u).transpose(1, 2)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        bias = rel_shift(torch.matmul(q_v, p.transpose(-2, -1))) * (1.0 / math.sqrt(self.d_k))
        if key_mask is not None:
            bias = bias.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        out = F.scaled_dot_product_attention(q_u, k, v, attn_mask=bias)
        return self.linear_out(out.transpose(1, 2).reshape(b, t, self.heads * self.d_k))


class FeedForward(nn.Module):
    """Position-wise feed-forward `w_2(act(w_1(x)))`."""

    def __init__(self, dim: int, hidden: int, activation: str) -> None:
        super().__init__()
        self.w_1 = nn.Linear(dim, hidden)
        self.w_2 = nn.Linear(hidden, dim)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.w_1(x)
        if self.activation == "swish":
            h = F.silu(h)
        elif self.activation == "relu":
            h = F.relu(h)
        else:
            h = F.gelu(h)
        return self.w_2(h)


class ConformerLayer(nn.Module):
    """Self-attention and feed-forward sub-blocks with residuals; LayerNorm before (or after) each."""

    def __init__(self, config: ConformerConfig) -> None:
        super().__init__()
        dim = config.output_size
        self.self_attn = RelPositionAttention(config.attention_heads, dim)
        self.feed_forward = FeedForward(dim, config.linear_units, config.activation_type)
        self.norm_mha = nn.LayerNorm(dim, eps=1e-5)
        self.norm_ff = nn.LayerNorm(dim, eps=1e-5)
        self.normalize_before = config.normalize_before

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        if self.normalize_before:
            x = x + self.self_attn(self.norm_mha(x), pos_emb, key_mask)
            return x + self.feed_forward(self.norm_ff(x))
        x = self.norm_mha(x + self.self_attn(x, pos_emb, key_mask))
        return self.norm_ff(x + self.feed_forward(x))


class LinearInput(nn.Module):
    """`Linear -> LayerNorm` input layer (keys `embed.out.0`, `embed.out.1`)."""

    def __init__(self, idim: int, odim: int) -> None:
        super().__init__()
        self.out = nn.Sequential(nn.Linear(idim, odim), nn.LayerNorm(odim, eps=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x)


class ConformerEncoder(nn.Module):
    """Full-context encoder over `[B, T, input_size]`; padded frames are masked as keys."""

    def __init__(self, config: ConformerConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = LinearInput(config.input_size, config.output_size)
        self.encoders = nn.ModuleList(ConformerLayer(config) for _ in range(config.num_blocks))
        self.after_norm = nn.LayerNorm(config.output_size, eps=1e-5)
        self.xscale = math.sqrt(config.output_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Encode `x`; `lengths` [B] marks valid frames (None: all frames valid)."""
        t = x.shape[1]
        key_mask = None
        if lengths is not None and bool((lengths < t).any()):
            key_mask = torch.arange(t, device=x.device)[None, :] < lengths[:, None].to(x.device)
        x = self.embed(x) * self.xscale
        pos_emb = rel_position_encoding(t, self.config.output_size, x.device, x.dtype)
        for layer in self.encoders:
            x = layer(x, pos_emb, key_mask)
        return self.after_norm(x) if self.config.normalize_before else x
