"""The training forward: the Step1 stack over padded batches, with the head applied only where the loss is.

`Step1ForCausalLM.hidden` serves inference (caches, slots); training needs no cache but wants optional
activation checkpointing per layer and must not run the 74,752-wide head on the thousands of prompt
positions whose logits the loss ignores. So this module calls the model's own layers, norm and head (no
second copy of any weight) with the same position and ALiBi rules, as an `nn.Module` so that DDP/FSDP
wrap it and see every call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from stepaudio.lm.attention import plan_attention
from stepaudio.lm.step1.alibi import alibi_bias
from stepaudio.lm.step1.model import Step1ForCausalLM
from stepaudio.train.examples import IGNORE_INDEX


class TTSLossModule(nn.Module):
    """forward(input_ids, valid, labels) -> (summed cross-entropy over target tokens, their count)."""

    def __init__(self, model: Step1ForCausalLM, *, activation_checkpointing: bool = False) -> None:
        super().__init__()
        self.lm = model
        self.activation_checkpointing = activation_checkpointing

    def hidden(self, input_ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden states [B, T, H] of right-padded rows (positions count real tokens)."""
        lm = self.lm
        batch, length = input_ids.shape
        plan, _ = plan_attention(batch, length, input_ids.device, None, None, valid, None)
        bias = alibi_bias(lm.alibi_slopes, plan.positions, plan.key_positions, plan.allowed, lm.dtype)
        x = lm.embed(input_ids)
        for i, layer in enumerate(lm.model.layers):
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, bias, None, None, i, use_reentrant=False)
            else:
                x = layer(x, bias, None, None, i)
        return lm.model.norm(x)

    def forward(
        self, input_ids: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden(input_ids, valid)
        targets = labels[:, 1:]
        keep = targets != IGNORE_INDEX
        logits = self.lm.logits(h[:, :-1][keep])
        loss = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
        return loss, keep.sum()
