"""Our Qwen2 forward against transformers' `Qwen2ForCausalLM` on the same random weights (skips without it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch

from stepaudio.lm.generate import pad_prompts
from stepaudio.lm.qwen2.model import Qwen2ForCausalLM

transformers = pytest.importorskip("transformers")

Factory = Callable[..., Qwen2ForCausalLM]


def _reference(model: Qwen2ForCausalLM) -> torch.nn.Module:
    config = transformers.Qwen2Config(**model.config.to_hf_dict())
    reference = transformers.Qwen2ForCausalLM(config).eval()
    missing, unexpected = reference.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    return reference


@pytest.mark.parametrize("tied", [False, True])
def test_logits_match_transformers(tiny_qwen2: Factory, tied: bool) -> None:
    model = tiny_qwen2(replace(tiny_qwen2().config, tie_word_embeddings=tied), seed=2)
    reference = _reference(model)
    ids = torch.randint(0, 64, (2, 13), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(input_ids=ids).logits
    torch.testing.assert_close(model(ids), expected, atol=1e-5, rtol=1e-5)


def test_left_padded_batch_matches_transformers_with_attention_mask(tiny_qwen2: Factory) -> None:
    model = tiny_qwen2(seed=3)
    reference = _reference(model)
    ids, valid = pad_prompts([[1, 5, 9, 33, 2, 7, 60], [1, 40, 3]], pad_id=0, side="left")
    positions = (valid.long().cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=valid.long(), position_ids=positions).logits
    ours = model(ids, valid=valid)
    torch.testing.assert_close(ours[valid], expected[valid], atol=1e-5, rtol=1e-5)
