"""DiT estimator of the CFM: predicts the flow velocity from [x, mu, speaker, cond] and the time t.

Each block is adaLN-modulated (9 chunks: attention, MLP and conv shift/scale/gate): attention with q/k bias and
a per-head LayerNorm on q and k and no positional encoding, a causal conv block (k3, LayerNorm, Mish, k3),
and a tanh-GELU MLP. Offline, attention is over the whole sequence (the reference's mask is all ones).
Chunked (`forward_chunk`), a chunk attends to itself and to every cached frame; the reference concatenates
the cache **after** the new keys (new-before-old), which only changes the summation order, but its
`Token2wav.stream` trims that axis by position, so the order is kept here too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.decoder.cosyvoice2.config import DiTConfig


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class TimestepEmbedder(nn.Module):
    """`[cos, sin]` of `1000 t` at 128 log-spaced frequencies, then Linear-SiLU-Linear (keys mlp.0, mlp.2)."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )
        self.frequency_embedding_size = frequency_embedding_size

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.frequency_embedding_size // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(start=0, end=half) / half).to(t)
        args = (t * 1000)[:, None] * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if self.frequency_embedding_size % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return self.mlp(emb)


class Attention(nn.Module):
    """Multi-head attention with q/k/v biases and LayerNorm over each head's q and k."""

    def __init__(self, dim: int, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        inner = num_heads * head_dim
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.q_norm = nn.LayerNorm(head_dim)
        self.k_norm = nn.LayerNorm(head_dim)
        self.proj = nn.Linear(inner, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.reshape(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor | None = None, cache: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x `[B, T, C]`; key_mask `[B, T]` (True = valid); cache `[B, H, Tc, 2*hd]` -> out, new cache
        `[B, H, T + Tc, 2*hd]` (this chunk's keys first, then the cached ones)."""
        b, t, _ = x.shape
        q = self.q_norm(self._heads(self.to_q(x)))
        k = self.k_norm(self._heads(self.to_k(x)))
        v = self._heads(self.to_v(x))
        if cache is not None:
            k_cache, v_cache = cache.chunk(2, dim=3)
            k = torch.cat([k, k_cache], dim=2)
            v = torch.cat([v, v_cache], dim=2)
        new_cache = torch.cat([k, v], dim=3)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(b, t, -1)), new_cache


class CausalConv1d(nn.Conv1d):
    """Conv1d with `kernel - 1` frames of left context: zeros offline, the previous frames when chunked."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size)
        self.context = kernel_size - 1

    def forward_chunk(self, x: torch.Tensor, cache: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """x `[B, C, T]`, cache `[B, C, kernel - 1]` (None: zeros) -> output `[B, C', T]`, new cache."""
        if cache is None:
            cache = x.new_zeros(x.shape[0], x.shape[1], self.context)
        x = torch.cat([cache, x], dim=2)
        return super().forward(x), x[..., x.shape[2] - self.context :]


class _Transpose(nn.Module):
    """Keeps the reference's Sequential indices (block.1 conv, block.3 LayerNorm, block.6 conv)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class CausalConvBlock(nn.Module):
    """conv (k3, causal) -> LayerNorm -> Mish -> conv (k3, causal), over `[B, T, C]`."""

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.channels = channels
        self.block = nn.Sequential(
            _Transpose(), CausalConv1d(channels, channels, kernel_size), _Transpose(),
            nn.LayerNorm(channels), nn.Mish(),
            _Transpose(), CausalConv1d(channels, channels, kernel_size), _Transpose(),
        )  # fmt: skip

    def forward_chunk(self, x: torch.Tensor, cache: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """cache `[B, 2C, kernel - 1]` (both convs' left contexts; None: zeros) -> `[B, T, C]`, new cache."""
        conv1, norm, act, conv2 = self.block[1], self.block[3], self.block[4], self.block[6]
        assert isinstance(conv1, CausalConv1d) and isinstance(conv2, CausalConv1d)
        c1, c2 = (None, None) if cache is None else cache.split(self.channels, dim=1)
        h, new1 = conv1.forward_chunk(x.transpose(1, 2), c1)
        h = act(norm(h.transpose(1, 2))).transpose(1, 2)
        h, new2 = conv2.forward_chunk(h, c2)
        return h.transpose(1, 2), torch.cat([new1, new2], dim=1)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    """x += gate * sublayer(modulate(norm(x))) for attention, then the conv block, then the MLP."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.norm1 = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(h, config.num_heads, config.head_dim)
        self.norm2 = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(h, config.mlp_hidden)
        self.norm3 = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.conv = CausalConvBlock(h)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(h, 9 * h))

    def forward(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        cnn_cache: torch.Tensor | None = None,
        att_cache: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x `[B, T, C]`, c `[B, 1, C]` -> x, new conv cache, new attention cache."""
        (shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp,
         shift_conv, scale_conv, gate_conv) = self.adaLN_modulation(c).chunk(9, dim=-1)  # fmt: skip
        att, new_att = self.attn(modulate(self.norm1(x), shift_msa, scale_msa), key_mask, att_cache)
        x = x + gate_msa * att
        conv, new_cnn = self.conv.forward_chunk(modulate(self.norm3(x), shift_conv, scale_conv), cnn_cache)
        x = x + gate_conv * conv
        x = x + gate_mlp * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x, new_cnn, new_att


class FinalLayer(nn.Module):
    def __init__(self, hidden_size: int, out_channels: int) -> None:
        super().__init__()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, out_channels)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    """Keys: `t_embedder.mlp.*`, `in_proj`, `blocks.N.*`, `final_layer.*` (as the reference's `decoder.estimator`)."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        self.t_embedder = TimestepEmbedder(config.hidden_size, config.frequency_embedding_size)
        self.in_proj = nn.Linear(config.in_channels, config.hidden_size)
        self.blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.depth))
        self.final_layer = FinalLayer(config.hidden_size, config.out_channels)

    def _inputs(self, x: torch.Tensor, mu: torch.Tensor, t: torch.Tensor, spks: torch.Tensor,
                cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.t_embedder(t).unsqueeze(1)
        spk = spks[:, :, None].expand(-1, -1, x.shape[-1])
        h = torch.cat([x, mu, spk, cond], dim=1).transpose(1, 2)
        return self.in_proj(h), c

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        mu: torch.Tensor,
        t: torch.Tensor,
        spks: torch.Tensor,
        cond: torch.Tensor,
    ) -> torch.Tensor:
        """x, mu, cond `[B, 80, T]`, mask `[B, 1, T]` (None: all valid), t `[B]`, spks `[B, 80]` -> `[B, 80, T]`."""
        h, c = self._inputs(x, mu, t, spks, cond)
        key_mask = None if mask is None or bool(mask.bool().all()) else mask[:, 0].bool()
        for block in self.blocks:
            h, _, _ = block(h, c, key_mask)
        return self.final_layer(h, c).transpose(1, 2)

    def forward_chunk(
        self,
        x: torch.Tensor,
        mu: torch.Tensor,
        t: torch.Tensor,
        spks: torch.Tensor,
        cond: torch.Tensor,
        cnn_cache: torch.Tensor | None,
        att_cache: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One chunk; caches stacked over blocks: cnn `[depth, B, 2C, 2]`, att `[depth, B, H, Tc, 2*hd]`
        (None: first chunk) -> output `[B, 80, T]`, new cnn cache, new att cache `[depth, B, H, T + Tc, 2*hd]`."""
        h, c = self._inputs(x, mu, t, spks, cond)
        new_cnn, new_att = [], []
        for i, block in enumerate(self.blocks):
            h, cnn, att = block(
                h, c, None, None if cnn_cache is None else cnn_cache[i], None if att_cache is None else att_cache[i]
            )
            new_cnn.append(cnn)
            new_att.append(att)
        return self.final_layer(h, c).transpose(1, 2), torch.stack(new_cnn), torch.stack(new_att)
