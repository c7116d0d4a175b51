"""The small causal-LM protocol that generation drives, so every model family shares one decode loop.

A family (`lm.step1`, `lm.qwen2`) implements embed -> hidden -> logits as separate steps: generation may
start from embeddings (Step-Audio 2 writes audio-encoder rows into the prompt's embeddings), and prefill
applies the head only at the last prompt position of each row.
"""

from __future__ import annotations

from typing import Protocol

import torch

from stepaudio.lm.cache import CacheStep, KVLayout, StaticKVCache


class CausalLM(Protocol):
    """A decoder-only LM over padded batches with a `StaticKVCache`.

    Conventions shared by every family: `valid` [B, q] marks real tokens (padding rows stay out of every
    other token's attention); `positions` [B, q] default to the running count of real tokens per row (the
    next one read from the cache); with a cache, a call appends its tokens to it, in the slots of `step`
    (reserved from the cache when None).
    """

    @property
    def kv_layout(self) -> KVLayout: ...

    @property
    def pad_id(self) -> int:
        """The id written into padding positions (never attended, never penalised)."""
        ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype:
        """The activation and KV cache dtype."""
        ...

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """ids [B, q] -> embeddings [B, q, H]."""
        ...

    def hidden(
        self,
        embeds: torch.Tensor,
        positions: torch.Tensor | None = None,
        cache: StaticKVCache | None = None,
        valid: torch.Tensor | None = None,
        *,
        step: CacheStep | None = None,
    ) -> torch.Tensor:
        """Embeddings [B, q, H] -> final-norm hidden states [B, q, H]."""
        ...

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states [..., H] -> logits [..., V]."""
        ...


def new_cache(model: CausalLM, batch_size: int, max_len: int) -> StaticKVCache:
    """An empty cache for `model` on its device and dtype."""
    return StaticKVCache(model.kv_layout, batch_size, max_len, device=model.device, dtype=model.dtype)
