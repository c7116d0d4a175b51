from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from stepaudio.lm.attention import attention_allowed
from stepaudio.lm.step1.alibi import alibi_bias, alibi_slopes


def test_slopes_power_of_two_and_extra_rule() -> None:
    assert torch.allclose(alibi_slopes(4), torch.tensor([2**-2, 2**-4, 2**-6, 2**-8]))
    s12 = alibi_slopes(12)
    assert torch.allclose(s12[:8], torch.tensor([2.0 ** (-k) for k in range(1, 9)]))
    assert torch.allclose(s12[8:], torch.tensor([2.0 ** (-k / 2) for k in (1, 3, 5, 7)]))


def test_bias_is_sqrt_distance_and_causal() -> None:
    slopes = alibi_slopes(2)
    pos = torch.arange(4)[None]
    slot = torch.arange(4)
    allowed = attention_allowed(pos, slot, pos, slot, torch.ones(1, 4, dtype=torch.bool))
    bias = alibi_bias(slopes, pos, pos, allowed, torch.float32)
    assert bias.shape == (1, 2, 4, 4)
    assert bias[0, 1, 3, 0].item() == pytest.approx(-slopes[1].item() * math.sqrt(3))
    assert torch.isinf(bias[0, :, 0, 1:]).all() and not torch.isinf(bias[0, :, 3]).any()


@pytest.mark.conformance
def test_conformance_slopes_and_bias(conformance_dir: Path) -> None:
    data = json.loads((conformance_dir / "step1" / "alibi.json").read_text())
    for heads, expected in data["slopes"].items():
        assert torch.allclose(alibi_slopes(int(heads)), torch.tensor(expected), rtol=1e-6, atol=0), heads
    example = data["bias_example"]
    n, heads = example["block_size"], example["n_heads"]
    ref = torch.tensor([[[float("-inf") if x is None else x for x in row] for row in h] for h in example["bias"]])
    pos = torch.arange(n)[None]
    slot = torch.arange(n)
    allowed = attention_allowed(pos, slot, pos, slot, torch.ones(1, n, dtype=torch.bool))
    ours = alibi_bias(alibi_slopes(heads), pos, pos, allowed, torch.float32)[0]
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))
    finite = ~torch.isinf(ref)
    assert torch.allclose(ours[finite], ref[finite], atol=1e-6)
