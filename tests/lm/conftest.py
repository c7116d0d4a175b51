"""Tiny random Step1 models for the lm tests (no checkpoint needed)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from stepaudio.lm.config import Step1Config
from stepaudio.lm.model import Step1ForCausalLM

TINY = Step1Config(
    hidden_size=48,
    intermediate_size=80,
    num_attention_heads=6,
    num_attention_groups=2,
    num_hidden_layers=2,
    vocab_size=64,
    max_seq_len=512,
)


def random_model(config: Step1Config = TINY, seed: int = 0, dtype: torch.dtype = torch.float32) -> Step1ForCausalLM:
    """A model whose every weight (norms included) is random, so no parameter can hide a bug."""
    torch.manual_seed(seed)
    model = Step1ForCausalLM(config, dtype=dtype)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                param.copy_(1.0 + 0.2 * torch.randn_like(param))
            else:
                param.copy_(torch.randn_like(param) / param.shape[-1] ** 0.5)
    return model.eval()


@pytest.fixture
def tiny_model() -> Callable[..., Step1ForCausalLM]:
    return random_model
