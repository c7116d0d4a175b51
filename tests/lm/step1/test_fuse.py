from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from stepaudio.lm.quant import quantize_int8
from stepaudio.lm.step1.fuse import fuse_projections
from stepaudio.lm.step1.model import Step1ForCausalLM

Factory = Callable[..., Step1ForCausalLM]


def test_fused_projections_give_the_same_logits(tiny_model: Factory) -> None:
    model = tiny_model(seed=8)
    ids = torch.randint(0, 64, (2, 9))
    ref = model(ids)
    fused = fuse_projections(tiny_model(seed=8))
    attn = fused.model.layers[0].self_attn
    assert attn.qkv_proj is not None and not hasattr(attn, "q_proj")
    assert torch.allclose(fused(ids), ref, atol=1e-5)


def test_fuse_then_quantise_matches_quantise(tiny_model: Factory) -> None:
    ids = torch.randint(0, 64, (1, 12))
    plain = quantize_int8(tiny_model(seed=9), "weight-only")
    fused = quantize_int8(fuse_projections(tiny_model(seed=9)), "weight-only")
    assert torch.allclose(fused(ids), plain(ids), atol=1e-4)  # per-row scales: fusion changes nothing
    with pytest.raises(TypeError):
        fuse_projections(quantize_int8(tiny_model(seed=9)))
