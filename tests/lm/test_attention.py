from __future__ import annotations

import torch

from stepaudio.lm.attention import attention_allowed, plan_attention
from stepaudio.lm.cache import KVLayout, StaticKVCache


def test_padding_keys_are_hidden_but_pad_queries_see_themselves() -> None:
    pos = torch.tensor([[0, 0, 1]])
    valid = torch.tensor([[False, True, True]])
    slot = torch.arange(3)
    allowed = attention_allowed(pos, slot, pos, slot, valid)
    assert allowed[0].tolist() == [[True, False, False], [False, True, False], [False, True, True]]


def test_plan_continues_positions_from_the_cache_per_row() -> None:
    cache = StaticKVCache(KVLayout(layers=1, kv_heads=1, head_dim=2), 2, 8)
    valid = torch.tensor([[False, True, True], [True, True, True]])
    first, step = plan_attention(2, 3, torch.device("cpu"), None, cache, valid, None)
    assert first.positions.tolist() == [[0, 0, 1], [0, 1, 2]] and step is not None and step.end == 3
    second, step = plan_attention(2, 1, torch.device("cpu"), None, cache, None, None)
    assert second.positions.tolist() == [[2], [3]] and step is not None and (step.start, step.end) == (3, 4)
    assert second.key_positions.shape == (2, 4)
    assert second.allowed[0, 0].tolist() == [False, True, True, True]  # the padding slot stays hidden
    uncached, step = plan_attention(1, 2, torch.device("cpu"), None, None, None, None)
    assert step is None and uncached.allowed[0].tolist() == [[True, False], [True, True]]
