"""Building blocks every family's decoder shares: the fp32-statistics RMSNorm, frozen linears, the backbone
(embedding, layers, norm) and the `CausalLM` plumbing around a family's own `hidden`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.lm.cache import CacheStep, StaticKVCache


class RMSNorm(nn.Module):
    """`x * rsqrt(mean(x^2) + eps) * weight`, the statistics in fp32 (no +1 on the weight)."""

    def __init__(self, dim: int, eps: float, device: torch.device | str | None, dtype: torch.dtype | None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.to(torch.float32)
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return x32.to(x.dtype) * self.weight


def frozen_linear(
    n_in: int, n_out: int, device: torch.device | str | None, dtype: torch.dtype | None, *, bias: bool = False
) -> nn.Linear:
    """An inference linear (no gradients; training turns them on where it wants them)."""
    layer = nn.Linear(n_in, n_out, bias=bias, device=device, dtype=dtype)
    layer.requires_grad_(False)
    return layer


class SwiGLU(nn.Module):
    """The decoders' MLP: down(silu(gate(x)) * up(x)); `gate_up_proj`, when a weight format fuses the two
    (`lm.step1.fuse`), computes gate and up in one matmul."""

    def __init__(self, hidden: int, intermediate: int, device: torch.device | str | None,
                 dtype: torch.dtype | None) -> None:
        super().__init__()
        self.gate_proj = frozen_linear(hidden, intermediate, device, dtype)
        self.up_proj = frozen_linear(hidden, intermediate, device, dtype)
        self.down_proj = frozen_linear(intermediate, hidden, device, dtype)
        self.gate_up_proj: nn.Module | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up_proj is not None:
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(F.silu(gate) * up)


class PreNormLayer(nn.Module):
    """A decoder layer of every family: x + attention(norm(x)), then x + mlp(norm(x)). The family's attention
    takes its own position inputs (RoPE tables and a mask, or an ALiBi bias), passed through `forward`; its
    modules are built in checkpoint order (norm, attention, norm, MLP), so seeded random weights stay the same."""

    def __init__(self, hidden: int, eps: float, attention: Callable[[], nn.Module], mlp: Callable[[], nn.Module],
                 device: torch.device | str | None, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(hidden, eps, device, dtype)
        self.self_attn = attention()
        self.post_attention_layernorm = RMSNorm(hidden, eps, device, dtype)
        self.mlp = mlp()

    def forward(self, x: torch.Tensor, *attention_inputs: Any) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), *attention_inputs)
        return x + self.mlp(self.post_attention_layernorm(x))


class DecoderConfig(Protocol):
    """What `Backbone`, `DecoderLM` and `decoder_shapes` read of a family's config."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def hidden_size(self) -> int: ...

    @property
    def rms_norm_eps(self) -> float: ...

    @property
    def pad_token_id(self) -> int: ...

    @property
    def intermediate_size(self) -> int: ...

    @property
    def num_hidden_layers(self) -> int: ...

    @property
    def kv_dim(self) -> int: ...


def decoder_shapes(cfg: DecoderConfig, *, qkv_bias: bool, head: bool) -> dict[str, tuple[int, ...]]:
    """Every checkpoint key of a `DecoderLM` (embedding, layers, norm, and the head unless tied) and its shape,
    in checkpoint order; `qkv_bias` for families whose q/k/v projections carry biases (Qwen2)."""
    h, i, kv, v = cfg.hidden_size, cfg.intermediate_size, cfg.kv_dim, cfg.vocab_size
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h)}
    for n in range(cfg.num_hidden_layers):
        p = f"model.layers.{n}."
        shapes[p + "input_layernorm.weight"] = (h,)
        for name, rows in (("q_proj", h), ("k_proj", kv), ("v_proj", kv)):
            shapes[f"{p}self_attn.{name}.weight"] = (rows, h)
            if qkv_bias:
                shapes[f"{p}self_attn.{name}.bias"] = (rows,)
        shapes |= {
            p + "self_attn.o_proj.weight": (h, h),
            p + "post_attention_layernorm.weight": (h,),
            p + "mlp.gate_proj.weight": (i, h),
            p + "mlp.up_proj.weight": (i, h),
            p + "mlp.down_proj.weight": (h, i),
        }
    shapes["model.norm.weight"] = (h,)
    if head:
        shapes["lm_head.weight"] = (v, h)
    return shapes


class Backbone(nn.Module):
    """The checkpoints' `model.*`: token embedding, the family's decoder layers, final norm."""

    def __init__(self, cfg: DecoderConfig, layers: Iterable[nn.Module], device: torch.device | str | None,
                 dtype: torch.dtype | None) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, device=device, dtype=dtype)
        self.embed_tokens.weight.requires_grad_(False)
        self.layers = nn.ModuleList(layers)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, device, dtype)


class DecoderLM(nn.Module):
    """The `CausalLM` plumbing every family shares around its own `hidden` (position encoding and layers):
    pad id, device and dtype from the embedding, embed, head, and `forward` = head(hidden(embed(ids)))."""

    config: DecoderConfig

    def __init__(self, config: DecoderConfig, layers: Iterable[nn.Module], device: torch.device | str | None,
                 dtype: torch.dtype | None) -> None:
        super().__init__()
        self.config = config
        self.model = Backbone(config, layers, device, dtype)
        self.lm_head = frozen_linear(config.hidden_size, config.vocab_size, device, dtype)

    @property
    def pad_id(self) -> int:
        return self.config.pad_token_id

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed_tokens.weight.dtype

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(input_ids)

    def hidden(
        self,
        embeds: torch.Tensor,
        positions: torch.Tensor | None = None,
        cache: StaticKVCache | None = None,
        valid: torch.Tensor | None = None,
        *,
        step: CacheStep | None = None,
    ) -> torch.Tensor:
        """Final-norm hidden states [B, q, H] of embeddings [B, q, H]: the family's own."""
        raise NotImplementedError

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        cache: StaticKVCache | None = None,
        valid: torch.Tensor | None = None,
        *,
        step: CacheStep | None = None,
        logits_at: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [B, q, V] of ids [B, q], or [B, V] at the per-row indices `logits_at` [B] (no head elsewhere)."""
        h = self.hidden(self.embed(input_ids), positions, cache, valid, step=step)
        if logits_at is not None:
            h = h[torch.arange(h.shape[0], device=h.device), logits_at]
        return self.logits(h)
