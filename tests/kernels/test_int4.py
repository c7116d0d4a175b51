from __future__ import annotations

import pytest
import torch

from stepaudio.kernels.choices import Measured
from stepaudio.kernels.int4 import BACKENDS, GROUP_SIZES, Int4Linear, cpu_backend, fits


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(("group_size", "symmetric"), [(128, True), (64, False), (32, True), (32, False)])
def test_quantize_round_trip_error_stays_within_half_a_step(group_size: int, symmetric: bool) -> None:
    torch.manual_seed(0)
    weight = torch.randn(48, 256) * torch.linspace(0.01, 3.0, 48)[:, None]  # rows of very different size
    layer = Int4Linear.quantize(weight, group_size=group_size, symmetric=symmetric, backend="torch")
    restored = layer.dequantize()
    assert restored.shape == weight.shape and restored.dtype == torch.float32
    # every weight within half a quantisation step of its group, plus what rounding the scale to bf16 (2**-8
    # relative) moves the largest value of the group: 7.5 steps for symmetric groups, 15 with zero points
    scales = layer.scales_and_zeros[..., 0].float().t().repeat_interleave(group_size, dim=1)
    slack = (7.5 if symmetric else 15) * 2**-8
    assert ((restored - weight).abs() <= (0.5 + slack) * scales + 1e-6).all()
    assert _rel(restored, weight) < 0.12  # ~9-10 % for Gaussian weights at 4 bits
    q, _, zeros = layer.groups()
    assert (zeros is None) == symmetric
    assert int(q.min()) >= (-8 if symmetric else 0) and int(q.max()) <= (7 if symmetric else 15)


def test_from_groups_symmetric_is_q_times_scale() -> None:
    g = torch.Generator().manual_seed(1)
    q = torch.randint(-8, 8, (32, 128), generator=g, dtype=torch.int8)
    scales = torch.rand(32, 2, generator=g) * 0.1 + 0.01
    layer = Int4Linear.from_groups(q, scales, None, 64, backend="torch")
    scales16 = scales.to(torch.bfloat16).float()
    expected = q.float() * scales16.repeat_interleave(64, dim=1)
    torch.testing.assert_close(layer.dequantize(), expected, rtol=0, atol=0)
    x = torch.randn(5, 128, generator=g)
    ref = x.to(torch.bfloat16).float() @ expected.t()
    assert _rel(layer(x), ref) < 5e-3
    back_q, back_scales, back_zeros = layer.groups()
    assert torch.equal(back_q, q) and back_zeros is None
    torch.testing.assert_close(back_scales, scales16)


def test_from_groups_with_zero_points_is_q_minus_zero_times_scale() -> None:
    g = torch.Generator().manual_seed(2)
    q = torch.randint(0, 16, (64, 256), generator=g, dtype=torch.int32)
    zeros = torch.randint(0, 16, (64, 2), generator=g, dtype=torch.int32)
    scales = torch.rand(64, 2, generator=g) * 0.05 + 0.005
    layer = Int4Linear.from_groups(q, scales, zeros, 128, backend="torch")
    scales16 = scales.to(torch.bfloat16).float()
    expected = (q - zeros.repeat_interleave(128, dim=1)).float() * scales16.repeat_interleave(128, dim=1)
    # the kernels add a bf16 offset (8 - zero) * scale: off by at most a bf16 rounding of it
    assert (layer.dequantize() - expected).abs().max() <= 8 * scales16.max() * 2**-8
    x = torch.randn(3, 7, 256, generator=g)
    out = layer(x)
    assert out.shape == (3, 7, 64) and out.dtype == torch.float32
    ref = x.to(torch.bfloat16).float() @ expected.t()
    assert _rel(out, ref) < 5e-3
    back_q, _, back_zeros = layer.groups()
    assert back_zeros is not None
    assert torch.equal(back_q.int(), q) and torch.equal(back_zeros.int(), zeros)


def test_bias_is_added_and_output_dtype_follows_the_input() -> None:
    torch.manual_seed(3)
    weight, bias = torch.randn(32, 128), torch.randn(32)
    layer = Int4Linear.quantize(weight, bias, backend="torch")
    plain = Int4Linear.quantize(weight, backend="torch")
    x = torch.randn(4, 128)
    torch.testing.assert_close(layer(x), plain(x) + bias)
    ref = x @ layer.dequantize().t() + bias
    assert _rel(layer(x), ref) < 5e-3
    assert layer(x.to(torch.bfloat16)).dtype == torch.bfloat16
    assert "group_size=128" in repr(layer) and "bias=True" in repr(layer)


def test_one_row_block_and_many_agree() -> None:
    """Rows beyond a block (the CPU kernel packs rows in blocks, a tail block smaller) land in their place."""
    torch.manual_seed(4)
    weight = torch.randn(2048 + 80, 64)  # several blocks and a chunk boundary, then a 16-row tail
    layer = Int4Linear.quantize(weight, group_size=32, backend="torch")
    x = torch.randn(2, 64)
    assert _rel(layer(x), x @ layer.dequantize().t()) < 5e-3
    single = Int4Linear.quantize(weight[-16:], group_size=32, backend="torch")
    torch.testing.assert_close(single.dequantize(), layer.dequantize()[-16:])


def test_dtype_casts_keep_the_kernel_table_and_move_the_bias() -> None:
    layer = Int4Linear.quantize(torch.randn(16, 64), torch.randn(16), group_size=32, backend="torch")
    layer.to(torch.float16)
    assert layer.scales_and_zeros.dtype == torch.bfloat16 and layer.bias is not None
    assert layer.bias.dtype == torch.float16
    assert layer(torch.randn(1, 64, dtype=torch.float16)).dtype == torch.float16


def test_packed_weights_stay_out_of_the_state_dict() -> None:
    layer = Int4Linear.quantize(torch.randn(16, 64), torch.randn(16), group_size=32, backend="torch")
    assert set(layer.state_dict()) == {"bias"}
    assert layer.weight_bytes == 16 * 64 // 2 + 2 * 16 * 2 * 2 + 16 * 4


@pytest.mark.parametrize(
    ("shape", "group_size", "message"),
    [
        ((16, 100), 32, "not a multiple of group_size"),
        ((24, 128), 128, "multiple of 16"),
        ((16, 128), 16, "group_size 16"),
        ((16, 128, 1), 32, "2-D"),
    ],
)
def test_shapes_the_kernels_cannot_take_are_refused(shape: tuple[int, ...], group_size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Int4Linear.quantize(torch.randn(shape), group_size=group_size)


def test_from_groups_refuses_out_of_range_values_and_bad_scales() -> None:
    scales = torch.ones(16, 1)
    with pytest.raises(ValueError, match=r"-8\.\.7"):
        Int4Linear.from_groups(torch.full((16, 32), 9, dtype=torch.int8), scales, None, 32)
    with pytest.raises(ValueError, match=r"0\.\.15"):
        Int4Linear.from_groups(torch.full((16, 32), -1, dtype=torch.int8), scales,
                               torch.zeros(16, 1, dtype=torch.int8), 32)
    with pytest.raises(ValueError, match="scales have shape"):
        Int4Linear.from_groups(torch.zeros(16, 32, dtype=torch.int8), torch.ones(16, 2), None, 32)
    with pytest.raises(ValueError, match="integer"):
        Int4Linear.from_groups(torch.zeros(16, 32), scales, None, 32)


def test_fits_picks_the_largest_group_that_divides() -> None:
    assert fits(64, 3072) == 128
    assert fits(64, 192) == 64
    assert fits(64, 96) == 32
    assert fits(64, 48) is None
    assert fits(40, 128) is None
    assert fits(64, 512, group_size=256) == 256
    assert set(GROUP_SIZES) == {32, 64, 128, 256}


def test_backend_names_and_a_cached_choice_that_cannot_run_here(monkeypatch: pytest.MonkeyPatch) -> None:
    assert BACKENDS == ("auto", "torch", "ort", "ort-exact", "avx2")
    with pytest.raises(ValueError, match="unknown int4 backend"):
        cpu_backend("fast")
    # a cached `avx2` from when a compiler was installed: auto takes the last available candidate instead
    monkeypatch.setattr("stepaudio.kernels.int4.available_backends", lambda: ("torch", "ort"))
    monkeypatch.setattr("stepaudio.kernels.int4.cpu_int4_kernel", lambda: Measured("avx2", {}))
    assert cpu_backend("auto") == "ort"
