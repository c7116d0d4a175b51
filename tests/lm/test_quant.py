from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from stepaudio.hardware import onednn_can_pack
from stepaudio.lm.model import Step1ForCausalLM
from stepaudio.lm.quant import Int8Linear, quantize_int8, quantize_weight

needs_bf16_packing = pytest.mark.skipif(not onednn_can_pack(torch.bfloat16),
                                        reason="this CPU cannot pack bf16 weights for oneDNN (no AVX-512)")

Factory = Callable[..., Step1ForCausalLM]


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


@pytest.mark.parametrize("mode", ["dynamic", "weight-only", "packed"])
def test_int8_model_stays_close_to_fp32(tiny_model: Factory, mode: str) -> None:
    model = tiny_model(seed=6)
    ids = torch.randint(0, 64, (2, 20), generator=torch.Generator().manual_seed(0))
    ref = model(ids)
    quant = quantize_int8(tiny_model(seed=6), mode)
    assert not any(isinstance(m, torch.nn.Linear) for m in quant.modules())
    out = quant(ids)
    from stepaudio.lm.quant_packed import fbgemm_needs_reduce_range

    # observed 3-4.5%; 7.6% where FBGEMM needs 7-bit activations (no VNNI)
    limit = 0.12 if mode == "packed" and fbgemm_needs_reduce_range() else 0.1
    assert (out - ref).abs().max().item() < limit * ref.abs().max().item()
    agree = (out.argmax(-1) == ref.argmax(-1)).float().mean().item()
    assert agree > 0.9


def test_half_linears_stay_close_and_keep_the_model_dtype(tiny_model: Factory) -> None:
    from stepaudio.lm.quant import HalfLinear, half_linears

    ids = torch.randint(0, 64, (2, 10))
    ref = tiny_model(seed=11)(ids)
    model = half_linears(tiny_model(seed=11))
    assert isinstance(model.lm_head, HalfLinear) and model.lm_head.weight.dtype == torch.float16
    out = model(ids)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max().item() < 0.01 * ref.abs().max().item()


def test_weight_formats_resolve_and_apply() -> None:
    from stepaudio.lm.quant import (
        HalfLinear,
        Int8Linear,
        apply_weight_format,
        cpu_has_amx,
        fp16_matvec_is_faster,
        resolve_weight_format,
    )

    want = "bf16-packed" if cpu_has_amx() else "fp16-weights" if fp16_matvec_is_faster() else "none"
    assert resolve_weight_format("auto", "cpu", torch.bfloat16) == want
    assert resolve_weight_format("auto", "cpu", torch.float32) == "none"
    assert resolve_weight_format(None, "cpu", torch.bfloat16) == "none"
    with pytest.raises(ValueError, match="unknown weight format"):
        resolve_weight_format("int4", "cpu", torch.float32)
    from stepaudio.hardware import onednn_can_pack
    from stepaudio.lm.quant_packed import PackedBf16Linear, PackedInt8Linear

    formats = [("int8", PackedInt8Linear), ("int8-weight-only", Int8Linear), ("fp16-weights", HalfLinear)]
    if onednn_can_pack(torch.bfloat16):
        formats.append(("bf16-packed", PackedBf16Linear))
    for name, kind in formats:
        model = apply_weight_format(nn.Sequential(nn.Linear(32, 16, bias=False)), name)
        assert isinstance(model[0], kind)


def test_half_linear_prefill_and_decode_agree() -> None:
    from stepaudio.lm.quant import HalfLinear

    weight = torch.randn(64, 32).to(torch.bfloat16)
    layer = HalfLinear(weight)
    x = torch.randn(1, 12, 32).to(torch.bfloat16)
    want = torch.nn.functional.linear(x.float(), weight.float())
    many = layer(x)  # prefill path (more than 8 rows)
    one = torch.cat([layer(x[:, i : i + 1]) for i in range(12)], dim=1)  # decode path
    torch.testing.assert_close(many.float(), want, atol=0.05, rtol=0.02)
    torch.testing.assert_close(one.float(), want, atol=0.05, rtol=0.02)


def test_serve_lm_offers_every_weight_format() -> None:
    from stepaudio.cli.serve_lm import WEIGHT_FORMATS as CLI_FORMATS
    from stepaudio.lm.quant import WEIGHT_FORMATS

    assert CLI_FORMATS == WEIGHT_FORMATS


def test_packed_int8_matches_dequantised_weights_and_unpacks() -> None:
    from stepaudio.lm.quant_packed import PackedInt8Linear

    gen = torch.Generator().manual_seed(0)
    q = torch.randint(-127, 128, (24, 64), dtype=torch.int8, generator=gen)
    scale = torch.rand(24, generator=gen) * 0.01 + 1e-3
    layer = PackedInt8Linear(q, scale)
    ref_weight = q.float() * scale[:, None]
    for rows in (1, 7, 40):  # decode and prefill shapes
        x = torch.randn(rows, 64, generator=gen).to(torch.bfloat16)
        out = layer(x)
        ref = x.float() @ ref_weight.t()
        assert out.dtype == torch.bfloat16 and out.shape == (rows, 24)
        assert ((out.float() - ref).norm() / ref.norm()).item() < 0.03
    unpacked_q, unpacked_scale = layer.unpacked()
    assert torch.equal(unpacked_q, q)
    torch.testing.assert_close(unpacked_scale, scale)


@needs_bf16_packing
def test_packed_bf16_equals_plain_bf16_linear() -> None:
    from stepaudio.lm.quant_packed import PackedBf16Linear

    weight = torch.randn(48, 64).to(torch.bfloat16)
    layer = PackedBf16Linear(weight)
    for shape in ((1, 1, 64), (2, 3, 64), (40, 64)):
        x = torch.randn(*shape).to(torch.bfloat16)
        out = layer(x)
        assert out.shape == (*shape[:-1], 48) and out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), torch.nn.functional.linear(x, weight).float(), atol=0.02, rtol=0.01)
    assert layer.weight_bytes == 2 * 48 * 64


@needs_bf16_packing
def test_packed_bf16_model_matches_the_plain_model(tiny_model: Factory) -> None:
    from stepaudio.lm.quant import apply_weight_format

    ids = torch.randint(0, 64, (2, 12))
    plain = tiny_model(seed=3).to(torch.bfloat16)
    ref = plain(ids).float()
    packed = apply_weight_format(tiny_model(seed=3).to(torch.bfloat16), "bf16-packed")
    out = packed(ids).float()
    assert (out - ref).abs().max().item() < 0.02 * ref.abs().max().item()


def test_bf16_packing_is_refused_clearly_where_the_cpu_cannot_do_it() -> None:
    from stepaudio.errors import UnsupportedError
    from stepaudio.hardware import onednn_can_pack
    from stepaudio.lm.quant_packed import PackedBf16Linear

    assert onednn_can_pack(torch.float32)
    weight = torch.randn(32, 16)
    if onednn_can_pack(torch.bfloat16):
        assert PackedBf16Linear(weight)(torch.randn(2, 16)).shape == (2, 32)
    else:
        with pytest.raises(UnsupportedError, match="choose an fp32 or int8 weight format"):
            PackedBf16Linear(weight)
