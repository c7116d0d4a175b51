from __future__ import annotations

import pytest
import torch

from stepaudio.kernels.linear import HalfLinear, Int8Linear, quantize_weight


def test_quantize_weight_per_channel() -> None:
    w = torch.randn(16, 32) * torch.linspace(0.01, 10, 16)[:, None]
    q, scale = quantize_weight(w)
    assert q.dtype == torch.int8 and q.abs().max() == 127
    assert ((q.float() * scale[:, None] - w).abs() <= scale[:, None] / 2 + 1e-6).all()


@pytest.mark.parametrize("mode", ["dynamic", "weight-only"])
def test_int8_linear_matches_dequantised_weights(mode: str) -> None:
    layer = torch.nn.Linear(64, 24, bias=False)
    qlayer = Int8Linear.from_linear(layer, mode)
    x = torch.randn(3, 5, 64)
    ref = x @ (qlayer.qweight.float() * qlayer.scale[:, None]).t()
    out = qlayer(x)
    assert out.shape == (3, 5, 24) and out.dtype == x.dtype
    tol = 1e-4 if mode == "weight-only" else 0.02 * ref.abs().max().item()
    assert (out - ref).abs().max().item() < tol


def test_half_linear_prefill_and_decode_agree() -> None:

    weight = torch.randn(64, 32).to(torch.bfloat16)
    layer = HalfLinear(weight)
    x = torch.randn(1, 12, 32).to(torch.bfloat16)
    want = torch.nn.functional.linear(x.float(), weight.float())
    many = layer(x)  # prefill path (more than 8 rows)
    one = torch.cat([layer(x[:, i : i + 1]) for i in range(12)], dim=1)  # decode path
    torch.testing.assert_close(many.float(), want, atol=0.05, rtol=0.02)
    torch.testing.assert_close(one.float(), want, atol=0.05, rtol=0.02)
