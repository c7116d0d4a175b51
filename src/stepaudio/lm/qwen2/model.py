"""Qwen2 causal LM forward (Step-Audio 2's LLM): pre-norm decoder, RoPE grouped-query attention with q/k/v
biases, SwiGLU, tied or untied head.

Pure forward only, implementing `lm.protocol.CausalLM` with the same cache, padding and position rules as
Step1. Module names follow the checkpoint keys (`model.layers.N.self_attn.q_proj.bias`, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.lm.attention import plan_attention
from stepaudio.lm.cache import CacheStep, KVLayout, StaticKVCache
from stepaudio.lm.layers import DecoderLM, PreNormLayer, SwiGLU, frozen_linear
from stepaudio.lm.qwen2.config import Qwen2Config
from stepaudio.lm.qwen2.rope import apply_rope, inverse_frequencies, rope_tables


class Qwen2Attention(nn.Module):
    def __init__(self, cfg: Qwen2Config, device: torch.device | str | None, dtype: torch.dtype | None):
        super().__init__()
        self.cfg = cfg
        self.q_proj = frozen_linear(cfg.hidden_size, cfg.hidden_size, device, dtype, bias=True)
        self.k_proj = frozen_linear(cfg.hidden_size, cfg.kv_dim, device, dtype, bias=True)
        self.v_proj = frozen_linear(cfg.hidden_size, cfg.kv_dim, device, dtype, bias=True)
        self.o_proj = frozen_linear(cfg.hidden_size, cfg.hidden_size, device, dtype)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
        cache: StaticKVCache | None,
        step: CacheStep | None,
        layer: int,
    ) -> torch.Tensor:
        cfg = self.cfg
        b, q_len, _ = x.shape
        g, r, d = cfg.num_key_value_heads, cfg.group_size, cfg.head_dim
        cos, sin = rope
        q = apply_rope(self.q_proj(x).reshape(b, q_len, g * r, d).transpose(1, 2), cos, sin)
        k = apply_rope(self.k_proj(x).reshape(b, q_len, g, d).transpose(1, 2), cos, sin)
        v = self.v_proj(x).reshape(b, q_len, g, d).transpose(1, 2)
        if cache is not None and step is not None:
            k, v = cache.update(layer, step, k, v)
        # Query heads of one KV head are folded into the query-length axis, so K/V are never repeated:
        # head h = g * r + j uses KV head g (the reference's repeat_kv order).
        q = q.reshape(b, g, r * q_len, d)
        out = F.scaled_dot_product_attention(q.to(k.dtype), k, v, attn_mask=mask)
        out = out.view(b, g, r, q_len, d).permute(0, 3, 1, 2, 4).reshape(b, q_len, cfg.hidden_size)
        return self.o_proj(out.to(x.dtype))


class Qwen2Layer(PreNormLayer):
    """Qwen2's decoder layer; `forward(x, rope, mask, cache, step, i)`."""

    def __init__(self, cfg: Qwen2Config, device: torch.device | str | None, dtype: torch.dtype | None):
        super().__init__(cfg.hidden_size, cfg.rms_norm_eps, lambda: Qwen2Attention(cfg, device, dtype),
                         lambda: SwiGLU(cfg.hidden_size, cfg.intermediate_size, device, dtype), device, dtype)


class Qwen2ForCausalLM(DecoderLM):
    """The Qwen2 LM: a `CausalLM`; `forward` maps ids (+ positions, padding flags, cache) to logits."""

    config: Qwen2Config

    def __init__(
        self, config: Qwen2Config, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__(config, (Qwen2Layer(config, device, dtype) for _ in range(config.num_hidden_layers)),
                         device, dtype)
        self.tie_weights()
        inv_freq = inverse_frequencies(config.head_dim, config.rope_theta)
        self.inv_freq: torch.Tensor
        self.register_buffer("inv_freq", inv_freq.to("cpu" if device == "meta" else device), persistent=False)

    def tie_weights(self) -> None:
        """Share the embedding with the head when the config says so (again after loading replaces it)."""
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    @property
    def kv_layout(self) -> KVLayout:
        cfg = self.config
        return KVLayout(cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim)

    def hidden(
        self,
        embeds: torch.Tensor,
        positions: torch.Tensor | None = None,
        cache: StaticKVCache | None = None,
        valid: torch.Tensor | None = None,
        *,
        step: CacheStep | None = None,
    ) -> torch.Tensor:
        """Final-norm hidden states [B, q, H] of embeddings [B, q, H] (the `CausalLM` conventions)."""
        b, q_len, _ = embeds.shape
        plan, step = plan_attention(b, q_len, embeds.device, positions, cache, valid, step)
        rope = rope_tables(plan.positions, self.inv_freq, embeds.dtype)
        r, keys = self.config.group_size, plan.allowed.shape[-1]
        mask = plan.allowed[:, None, None].expand(b, 1, r, q_len, keys).reshape(b, 1, r * q_len, keys)
        x = embeds
        for i, layer in enumerate(self.model.layers):
            x = layer(x, rope, mask, cache, step, i)
        return self.model.norm(x)
