"""Tiny random models of both families for the lm tests (no checkpoint needed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import torch
from torch import nn

from stepaudio.lm.protocol import CausalLM
from stepaudio.lm.qwen2.config import Qwen2Config
from stepaudio.lm.qwen2.model import Qwen2ForCausalLM
from stepaudio.lm.step1.config import Step1Config
from stepaudio.lm.step1.model import Step1ForCausalLM

M = TypeVar("M", Step1ForCausalLM, Qwen2ForCausalLM)

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


def _random(family: type[M], default: Any) -> Callable[..., M]:
    """A factory of random models of one family: (config = the tiny one, seed, dtype) -> model in eval mode."""

    def build(config: Any = default, seed: int = 0, dtype: torch.dtype = torch.float32) -> M:
        torch.manual_seed(seed)
        model = family(config, dtype=dtype)
        _randomise(model)
        return model.eval()

    return build


@pytest.fixture
def tiny_model() -> Callable[..., Step1ForCausalLM]:
    return _random(Step1ForCausalLM, TINY)


@pytest.fixture
def tiny_qwen2() -> Callable[..., Qwen2ForCausalLM]:
    return _random(Qwen2ForCausalLM, TINY_QWEN2)


@pytest.fixture(params=["step1", "qwen2"])
def family(request: pytest.FixtureRequest) -> Callable[..., CausalLM]:
    """Each family's factory in turn, for the checks every `CausalLM` must pass."""
    return request.getfixturevalue("tiny_model" if request.param == "step1" else "tiny_qwen2")
