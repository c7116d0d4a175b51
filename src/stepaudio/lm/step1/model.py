"""Step1 causal LM forward: pre-norm decoder, sqrt-ALiBi grouped-query attention, SwiGLU, untied head.

Pure forward only, implementing `lm.protocol.CausalLM`: the caller owns the KV cache and decides positions
and padding; sampling and the decode loop live in `lm/generate.py`. Module names follow the checkpoint keys
(`model.layers.N.self_attn.q_proj.weight`, ...), so loading is a plain name-to-name map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.lm.attention import plan_attention
from stepaudio.lm.cache import CacheStep, KVLayout, StaticKVCache
from stepaudio.lm.layers import DecoderLM, PreNormLayer, SwiGLU, frozen_linear
from stepaudio.lm.step1.alibi import alibi_bias, alibi_slopes
from stepaudio.lm.step1.config import Step1Config


class Step1Attention(nn.Module):
    def __init__(self, cfg: Step1Config, device: torch.device | str | None, dtype: torch.dtype | None):
        super().__init__()
        self.cfg = cfg
        self.q_proj = frozen_linear(cfg.hidden_size, cfg.hidden_size, device, dtype)
        self.k_proj = frozen_linear(cfg.hidden_size, cfg.kv_dim, device, dtype)
        self.v_proj = frozen_linear(cfg.hidden_size, cfg.kv_dim, device, dtype)
        self.o_proj = frozen_linear(cfg.hidden_size, cfg.hidden_size, device, dtype)
        self.qkv_proj: nn.Module | None = None  # set by fuse.fuse_projections (opt-in speed-up)

    def forward(
        self,
        x: torch.Tensor,
        bias: torch.Tensor,
        cache: StaticKVCache | None,
        step: CacheStep | None,
        layer: int,
    ) -> torch.Tensor:
        cfg = self.cfg
        b, q_len, _ = x.shape
        g, r, d = cfg.num_attention_groups, cfg.group_size, cfg.head_dim
        if self.qkv_proj is not None:
            q, k, v = self.qkv_proj(x).split([cfg.hidden_size, cfg.kv_dim, cfg.kv_dim], dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = q.reshape(b, q_len, g, r, d).permute(0, 2, 3, 1, 4).reshape(b, g, r * q_len, d)
        k = k.reshape(b, q_len, g, d).transpose(1, 2)
        v = v.reshape(b, q_len, g, d).transpose(1, 2)
        if cache is not None and step is not None:
            k, v = cache.update(layer, step, k, v)
        # Query heads of one KV group are folded into the query-length axis, so K/V are never
        # repeated: head h = g * r + j uses group g (the reference's repeat_interleave order).
        mask = bias.view(b, g, r * q_len, -1)
        out = F.scaled_dot_product_attention(q.to(k.dtype), k, v, attn_mask=mask.to(k.dtype))
        out = out.view(b, g, r, q_len, d).permute(0, 3, 1, 2, 4).reshape(b, q_len, cfg.hidden_size)
        return self.o_proj(out.to(x.dtype))


class Step1MLP(SwiGLU):
    """Step1's MLP; `fuse.fuse_projections` sets its `gate_up_proj` (opt-in speed-up)."""

    def __init__(self, cfg: Step1Config, device: torch.device | str | None, dtype: torch.dtype | None):
        super().__init__(cfg.hidden_size, cfg.intermediate_size, device, dtype)


class Step1Layer(PreNormLayer):
    """Step1's decoder layer (the unit training wraps and shards); `forward(x, bias, cache, step, i)`."""

    def __init__(self, cfg: Step1Config, device: torch.device | str | None, dtype: torch.dtype | None):
        super().__init__(cfg.hidden_size, cfg.rms_norm_eps, lambda: Step1Attention(cfg, device, dtype),
                         lambda: Step1MLP(cfg, device, dtype), device, dtype)


class Step1ForCausalLM(DecoderLM):
    """The Step1 LM: a `CausalLM`; `forward` maps ids (+ positions, padding flags, cache) to logits."""

    config: Step1Config

    def __init__(
        self, config: Step1Config, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__(config, (Step1Layer(config, device, dtype) for _ in range(config.num_hidden_layers)),
                         device, dtype)
        slopes = alibi_slopes(config.num_attention_heads)
        self.alibi_slopes: torch.Tensor
        self.register_buffer("alibi_slopes", slopes.to("cpu" if device == "meta" else device), persistent=False)

    @property
    def kv_layout(self) -> KVLayout:
        cfg = self.config
        return KVLayout(cfg.num_hidden_layers, cfg.num_attention_groups, cfg.head_dim)

    def hidden(
        self,
        embeds: torch.Tensor,
        positions: torch.Tensor | None = None,
        cache: StaticKVCache | None = None,
        valid: torch.Tensor | None = None,
        *,
        step: CacheStep | None = None,
        collect: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Final-norm hidden states [B, q, H] of embeddings [B, q, H] (the `CausalLM` conventions).

        `collect`, when given, receives the reference's `output_hidden_states` list.
        """
        b, q_len, _ = embeds.shape
        plan, step = plan_attention(b, q_len, embeds.device, positions, cache, valid, step)
        bias = alibi_bias(self.alibi_slopes, plan.positions, plan.key_positions, plan.allowed, self.dtype)
        x = embeds
        if collect is not None:
            collect.append(x)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, bias, cache, step, i)
            if collect is not None and i < len(self.model.layers) - 1:
                collect.append(x)
        x = self.model.norm(x)
        if collect is not None:
            collect.append(x)
        return x
