from __future__ import annotations

import math

import pytest
import torch

from stepaudio.lm.sampling import (
    TTS_SAMPLING,
    SamplingConfig,
    ban_repeated_last,
    choose_tokens,
    repetition_penalty,
    top_k_filter,
    top_p_filter,
)


def test_top_k_keeps_k_largest() -> None:
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.0, 0.5]])
    out = top_k_filter(logits, 2)
    assert torch.isfinite(out).tolist() == [[False, True, False, True, False]]
    assert torch.equal(top_k_filter(logits, 0), logits)


def test_top_p_keeps_smallest_set_reaching_p() -> None:
    probs = torch.tensor([[0.5, 0.05, 0.3, 0.15]])
    logits = probs.log()
    assert torch.isfinite(top_p_filter(logits, 0.7)).tolist() == [[True, False, True, False]]
    assert torch.isfinite(top_p_filter(logits, 0.81)).tolist() == [[True, False, True, True]]
    assert torch.isfinite(top_p_filter(logits, 0.01)).sum() == 1  # never empty


def test_repetition_penalty_sign_aware_and_ignores_padding() -> None:
    logits = torch.tensor([[2.0, -2.0, 1.0, 4.0]])
    history = torch.tensor([[0, 1, 1, 3]])
    valid = torch.tensor([[True, True, True, False]])
    out = repetition_penalty(logits, history, 2.0, valid)
    assert out.tolist() == [[1.0, -4.0, 1.0, 4.0]]


def test_repetition_aware_ban_rule() -> None:
    logits = torch.zeros(3, 8)
    history = torch.tensor(
        [
            [1, 2, 3, 4, 5, 6, 7, 0, 1, 5],  # 5 twice in the window: banned
            [1, 2, 3, 4, 5, 6, 7, 0, 1, 2],  # 2 twice: banned
            [0, 1, 2, 3, 4, 5, 6, 7, 0, 6],  # 6 twice: banned
        ]
    )
    out = ban_repeated_last(logits, history)
    assert torch.isinf(out).nonzero().tolist() == [[0, 5], [1, 2], [2, 6]]
    unique = torch.tensor([[7, 1, 2, 3, 4, 5, 6, 0, 3, 7]])  # the first 7 is exactly 10 back: still counted
    assert torch.isinf(ban_repeated_last(torch.zeros(1, 8), unique)).any()
    outside = torch.tensor([[7, 7, 1, 2, 3, 4, 5, 6, 0, 3, 2, 7]])  # the other 7s are 11+ back
    assert not torch.isinf(ban_repeated_last(torch.zeros(1, 8), outside)).any()
    short = torch.tensor([[5, 5, 5]])  # fewer than 10 tokens: the reference does nothing
    assert not torch.isinf(ban_repeated_last(torch.zeros(1, 8), short)).any()


def test_seeded_sampling_is_deterministic_and_follows_distribution() -> None:
    logits = torch.randn(4, 50)
    history = torch.zeros(4, 0, dtype=torch.long)
    cfg = SamplingConfig(temperature=0.7, top_k=5)
    a = choose_tokens(logits, history, cfg, torch.Generator().manual_seed(7))
    b = choose_tokens(logits, history, cfg, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    allowed = torch.topk(logits, 5).indices
    draws = torch.stack([choose_tokens(logits, history, cfg, torch.Generator().manual_seed(s)) for s in range(50)])
    assert all(bool((allowed[r] == draws[:, r, None]).any(dim=1).all()) for r in range(4))


def test_temperature_sharpens() -> None:
    logits = torch.tensor([[0.0, math.log(2.0)]])
    history = torch.zeros(1, 0, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    cold = SamplingConfig(temperature=0.1)
    picks = [int(choose_tokens(logits, history, cold, gen)) for _ in range(200)]
    assert sum(picks) > 195  # p(1) = 2^10 / (1 + 2^10)


def test_greedy_respects_ban_and_tts_preset() -> None:
    assert TTS_SAMPLING.temperature == 0.7 and TTS_SAMPLING.top_k == 50 and TTS_SAMPLING.ban_repeats
    logits = torch.tensor([[0.0, 5.0, 1.0]])
    history = torch.tensor([[1] * 10])
    greedy_ban = SamplingConfig(temperature=0.0, ban_repeats=True)
    assert int(choose_tokens(logits, history, greedy_ban)) == 2
    with pytest.raises(ValueError):
        SamplingConfig(top_p=0.0)
