"""Tiny random models of both families for the lm tests (no checkpoint needed)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from stepaudio.lm.qwen2.config import Qwen2Config
from stepaudio.lm.qwen2.model import Qwen2ForCausalLM
from stepaudio.lm.step1.config import Step1Config
from stepaudio.lm.step1.model import Step1ForCausalLM

TINY = Step1Config(
    hidden_size=48,
    intermediate_size=80,
    num_attention_heads=6,
    num_attention_groups=2,
    num_hidden_layers=2,
    vocab_size=64,
    max_seq_len=512,
)

TINY_QWEN2 = Qwen2Config(
    hidden_size=48,
    intermediate_size=80,
    num_attention_heads=6,
    num_key_value_heads=2,
    num_hidden_layers=2,
    vocab_size=64,
    max_position_embeddings=512,
    rope_theta=10000.0,
    eos_token_ids=(3,),
)


def _randomise(model: nn.Module) -> None:
    """Every weight random (norms near 1, biases included), so no parameter can hide a bug."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.2 * torch.randn_like(param))
            else:
                param.copy_(torch.randn_like(param) / param.shape[-1] ** 0.5)


def random_model(config: Step1Config = TINY, seed: int = 0, dtype: torch.dtype = torch.float32) -> Step1ForCausalLM:
    torch.manual_seed(seed)
    model = Step1ForCausalLM(config, dtype=dtype)
    _randomise(model)
    return model.eval()


def random_qwen2(
    config: Qwen2Config = TINY_QWEN2, seed: int = 0, dtype: torch.dtype = torch.float32
) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config, dtype=dtype)
    _randomise(model)
    return model.eval()


@pytest.fixture
def tiny_model() -> Callable[..., Step1ForCausalLM]:
    return random_model


@pytest.fixture
def tiny_qwen2() -> Callable[..., Qwen2ForCausalLM]:
    return random_qwen2
