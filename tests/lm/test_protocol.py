"""The `CausalLM` conventions every family keeps (tiny random Step1 and Qwen2): a cached decode equals the full
forward, and padding, left or right, changes no row's logits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch

from stepaudio.lm.generate import pad_prompts
from stepaudio.lm.protocol import new_cache
from stepaudio.lm.qwen2.model import Qwen2ForCausalLM
from stepaudio.lm.step1.model import Step1ForCausalLM

Model = Step1ForCausalLM | Qwen2ForCausalLM
Factory = Callable[..., Model]


def _assert_incremental_equals_full(model: Model, tied: bool) -> None:
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    ids = torch.randint(0, 64, (2, 11), generator=torch.Generator().manual_seed(1))
    full = model(ids)
    cache = new_cache(model, 2, 32)
    parts = [model(ids[:, :4], cache=cache)]
    parts += [model(ids[:, i : i + 1], cache=cache) for i in range(4, 9)]
    parts.append(model(ids[:, 9:], cache=cache))
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)
    assert cache.length == 11


def test_incremental_decode_equals_full_forward(family: Factory) -> None:
    _assert_incremental_equals_full(family(), tied=False)


def test_incremental_decode_equals_full_forward_with_a_tied_head(tiny_qwen2: Callable[..., Qwen2ForCausalLM]) -> None:
    _assert_incremental_equals_full(tiny_qwen2(replace(tiny_qwen2().config, tie_word_embeddings=True)), tied=True)


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_equals_unpadded_rows(family: Factory, side: str) -> None:
    """Positions count real tokens, so padding shifts nothing (a bug here would move every RoPE angle or ALiBi
    distance)."""
    model = family(seed=1)
    prompts = [[1, 5, 9, 33, 2, 7, 60], [1, 40], [1, 3, 3, 3, 8]]
    ids, valid = pad_prompts(prompts, pad_id=0, side=side)
    cache = new_cache(model, 3, 16)
    out = model(ids, cache=cache, valid=valid)
    step_ids = torch.tensor([[11], [12], [13]])
    step = model(step_ids, cache=cache)[:, 0]
    for row, prompt in enumerate(prompts):
        ref_cache = new_cache(model, 1, 16)
        ref = model(torch.tensor([prompt]), cache=ref_cache)[0]
        assert torch.allclose(out[row][valid[row]], ref, atol=1e-5)
        ref_step = model(step_ids[row : row + 1], cache=ref_cache)[0, 0]
        assert torch.allclose(step[row], ref_step, atol=1e-5)
    assert torch.isfinite(out).all()
