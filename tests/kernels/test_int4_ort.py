from __future__ import annotations

import pytest
import torch

from stepaudio.errors import UnsupportedError
from stepaudio.kernels import int4_ort
from stepaudio.kernels.int4 import Int4Linear, cpu_backend
from stepaudio.kernels.int4_ort import ACCURACY_EXACT, ACCURACY_INT8, MatMulNBits, OrtInt4Options, missing

pytestmark = pytest.mark.skipif(missing() is not None, reason=f"no onnxruntime MatMulNBits: {missing()}")


def _groups(out_features: int, in_features: int, group_size: int, symmetric: bool, seed: int
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    low = -8 if symmetric else 0
    q = torch.randint(low, low + 16, (out_features, in_features), generator=g, dtype=torch.int8)
    scales = torch.rand(out_features, in_features // group_size, generator=g) * 0.05 + 0.005
    zeros = None if symmetric else torch.randint(0, 16, scales.shape, generator=g, dtype=torch.int8)
    return q, scales, zeros


def _weight(q: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, group_size: int) -> torch.Tensor:
    zero = 0.0 if zeros is None else zeros.float().repeat_interleave(group_size, dim=1)
    return (q.float() - zero) * scales.to(torch.bfloat16).float().repeat_interleave(group_size, dim=1)


@pytest.mark.parametrize(("group_size", "symmetric"), [(32, True), (64, False), (128, True), (256, False)])
def test_exact_level_equals_the_dequantised_product(group_size: int, symmetric: bool) -> None:
    """Level 0 multiplies fp32 activations by the fp32 dequantised weights: float rounding only."""
    q, scales, zeros = _groups(48, 512, group_size, symmetric, seed=group_size)
    layer = Int4Linear.from_groups(q, scales, zeros, group_size, backend="ort-exact")
    assert layer.backend == "ort-exact" and layer.packed.numel() == 0  # the session holds the only copy
    weight = _weight(q, scales, zeros, group_size)
    torch.testing.assert_close(layer.dequantize(), weight, rtol=0, atol=0)
    x = torch.randn(3, 5, 512, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(layer(x), x @ weight.t(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("group_size", "symmetric"), [(32, False), (128, True)])
def test_int8_level_stays_within_the_activation_rounding_bound(group_size: int, symmetric: bool) -> None:
    """Level 4 rounds each group of activations to int8 (scale = group absmax / 127), so an output is off by
    at most sum over groups of absmax / 254 * sum |w| of that group (plus float rounding)."""
    q, scales, zeros = _groups(64, 1024, group_size, symmetric, seed=3)
    layer = Int4Linear.from_groups(q, scales, zeros, group_size, backend="ort")
    assert layer.backend == "ort"
    weight = _weight(q, scales, zeros, group_size)
    x = torch.randn(4, 1024, generator=torch.Generator().manual_seed(2)) * torch.linspace(0.1, 3.0, 1024)
    ref = x @ weight.t()
    out = layer(x)
    step = x.reshape(4, -1, group_size).abs().amax(-1) / 254  # [rows, groups]
    mass = weight.abs().reshape(64, -1, group_size).sum(-1)  # [out, groups]
    bound = step @ mass.t()
    assert ((out - ref).abs() <= bound * 1.01 + 1e-5).all()
    assert float((out - ref).norm() / ref.norm()) < 0.02  # ~0.5 % for these activations


def test_bias_dtype_and_a_single_row() -> None:
    q, scales, _ = _groups(32, 256, 64, True, seed=5)
    bias = torch.randn(32)
    layer = Int4Linear.from_groups(q, scales, None, 64, bias, backend="ort-exact")
    x = torch.randn(1, 256).to(torch.bfloat16)
    out = layer(x)
    assert out.dtype == torch.bfloat16 and out.shape == (1, 32)
    ref = x.float() @ _weight(q, scales, None, 64).t() + bias
    torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)
    assert "backend=ort-exact" in repr(layer)


@pytest.mark.parametrize("symmetric", [True, False])
def test_groups_read_back_exactly_through_the_session(symmetric: bool) -> None:
    q, scales, zeros = _groups(32, 2048 + 128, 64, symmetric, seed=7)  # more rows than one read-back call
    for backend in ("ort", "ort-exact"):
        layer = Int4Linear.from_groups(q, scales, zeros, 64, backend=backend)
        back_q, back_scales, back_zeros = layer.groups()
        assert torch.equal(back_q, q)
        torch.testing.assert_close(back_scales, scales.to(torch.bfloat16).float(), rtol=0, atol=0)
        assert (back_zeros is None) if zeros is None else torch.equal(back_zeros, zeros)


def test_quantize_on_ort_matches_the_torch_rounding() -> None:
    weight = torch.randn(48, 256, generator=torch.Generator().manual_seed(8))
    for symmetric in (True, False):
        plain = Int4Linear.quantize(weight, group_size=64, symmetric=symmetric, backend="torch")
        ort = Int4Linear.quantize(weight, group_size=64, symmetric=symmetric, backend="ort-exact")
        assert torch.equal(plain.nibbles(), ort.nibbles())
        q, _, zeros = plain.groups()
        ort_q, _, ort_zeros = ort.groups()
        assert torch.equal(q, ort_q) and (zeros is None) == (ort_zeros is None)
        # torch adds a bf16 offset for zero points: within a bf16 rounding of (8 - zero) * scale
        assert float((plain.dequantize() - ort.dequantize()).abs().max()) <= 8 * float(weight.abs().max()) / 7 * 2**-8


def test_weight_bytes_count_nibbles_scales_and_bias() -> None:
    q, scales, zeros = _groups(32, 256, 64, False, seed=9)
    layer = Int4Linear.from_groups(q, scales, zeros, 64, torch.zeros(32), backend="ort")
    assert layer.weight_bytes == 32 * 256 // 2 + 4 * 32 * 4 + 32 * 4 // 2 + 32 * 4


def test_matmulnbits_packs_odd_block_counts_of_zero_points() -> None:
    """Three blocks: zero points pack into two bytes a row, the last nibble padding."""
    q, scales, zeros = _groups(16, 96, 32, False, seed=10)
    assert zeros is not None
    kernel = MatMulNBits((q.to(torch.int16)).to(torch.uint8), scales.to(torch.bfloat16).float(), zeros, 32,
                         OrtInt4Options(ACCURACY_EXACT, 1))
    x = torch.randn(2, 96)
    torch.testing.assert_close(kernel(x), x @ _weight(q, scales, zeros, 32).t(), rtol=1e-5, atol=1e-5)
    assert kernel.options.accuracy_level == ACCURACY_EXACT != ACCURACY_INT8


def test_missing_onnxruntime_falls_back_to_torch_or_refuses_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(int4_ort, "missing", lambda: "no onnxruntime here")
    monkeypatch.setattr("stepaudio.kernels.int4.missing", lambda: "no onnxruntime here")
    monkeypatch.setattr("stepaudio.kernels.int4_avx2.missing", lambda: "no compiler here")  # nor the AVX2 kernel
    with pytest.warns(UserWarning, match="no onnxruntime here"):
        assert cpu_backend("auto") == "torch"
    with pytest.raises(UnsupportedError, match="no onnxruntime here"):
        cpu_backend("ort")
    assert cpu_backend("torch") == "torch"
    with pytest.raises(ValueError, match="unknown int4 backend"):
        cpu_backend("fast")


def test_dtype_casts_keep_the_session_and_move_the_bias() -> None:
    q, scales, _ = _groups(16, 64, 32, True, seed=11)
    layer = Int4Linear.from_groups(q, scales, None, 32, torch.randn(16), backend="ort")
    kernel = layer.kernel
    layer.to(torch.float16).to("cpu")
    assert layer.kernel is kernel and layer.bias is not None and layer.bias.dtype == torch.float16
    assert layer(torch.randn(2, 64, dtype=torch.float16)).dtype == torch.float16
