from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from stepaudio.errors import UnsupportedError
from stepaudio.kernels import cbuild, int4_avx2
from stepaudio.kernels.int4 import Int4Linear, cpu_backend
from stepaudio.kernels.int4_avx2 import Avx2Int4, build, cpu_lacks, missing, pack, unpack

needs_kernel = pytest.mark.skipif(missing() is not None, reason=f"no AVX2 int4 kernel: {missing()}")


def _groups(out_features: int, in_features: int, group_size: int, symmetric: bool, seed: int
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    u = torch.randint(0, 16, (out_features, in_features), generator=g, dtype=torch.uint8)
    scales = torch.rand(out_features, in_features // group_size, generator=g) * 0.05 + 0.005
    zeros = None if symmetric else torch.randint(0, 16, scales.shape, generator=g, dtype=torch.uint8)
    return u, scales, zeros


def _weight(u: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, group_size: int) -> torch.Tensor:
    zero = 8.0 if zeros is None else zeros.float().repeat_interleave(group_size, dim=1)
    return (u.float() - zero) * scales.repeat_interleave(group_size, dim=1)


def test_pack_interleaves_blocks_of_8_rows_4_bytes_each_and_unpacks_exactly() -> None:
    u = torch.randint(0, 16, (16, 64), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    packed = pack(u)
    assert packed.shape == (2, 8, 8, 4)  # [row blocks, steps of 8 inputs, rows, bytes]
    assert int(packed[0, 0, 3, 1]) == int(u[3, 1]) | int(u[3, 5]) << 4
    assert int(packed[1, 2, 6, 3]) == int(u[14, 19]) | int(u[14, 23]) << 4
    assert torch.equal(unpack(packed), u)


@needs_kernel
@pytest.mark.parametrize(("group_size", "symmetric"), [(32, True), (32, False), (64, False), (128, True),
                                                       (256, False)])
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8])
def test_product_stays_within_the_int8_activation_rounding_bound(group_size: int, symmetric: bool,
                                                                  rows: int) -> None:
    """Activations are rounded to int8 per group (scale = absmax / 127): an output is off the exact product of
    the dequantised weights by at most sum over groups of absmax / 254 * sum |w| (plus float rounding)."""
    u, scales, zeros = _groups(48, 512, group_size, symmetric, seed=group_size + rows)
    kernel = Avx2Int4(u, scales, zeros, group_size)
    weight = _weight(u, scales, zeros, group_size)
    x = torch.randn(rows, 512, generator=torch.Generator().manual_seed(rows)) * torch.linspace(0.1, 3.0, 512)
    ref = x.double() @ weight.double().t()
    out = kernel(x)
    assert out.shape == (rows, 48) and out.dtype == torch.float32
    step = x.reshape(rows, -1, group_size).abs().amax(-1).double() / 254  # [rows, groups]
    bound = step @ weight.abs().reshape(48, -1, group_size).sum(-1).double().t()
    assert ((out.double() - ref).abs() <= bound * 1.001 + 1e-4).all()
    assert float((out.double() - ref).norm() / ref.norm()) < 0.02  # ~0.6 % for these activations


@needs_kernel
@pytest.mark.parametrize(("group_size", "symmetric"), [(32, False), (64, True), (128, False), (256, True)])
def test_integer_activations_with_full_range_groups_give_the_exact_product(group_size: int,
                                                                           symmetric: bool) -> None:
    """Integers in -127..127 whose group absmax is 127 round to themselves; with power-of-two scales every sum
    is an exact float."""
    u, _, zeros = _groups(32, 1024, group_size, symmetric, seed=7)
    scales = 2.0 ** torch.randint(-6, 0, (32, 1024 // group_size), generator=torch.Generator().manual_seed(8))
    g = torch.Generator().manual_seed(9)
    x = torch.randint(-127, 128, (6, 1024), generator=g).float()
    x[:, ::group_size] = 127.0
    out = Avx2Int4(u, scales, zeros, group_size)(x)
    torch.testing.assert_close(out, (x.double() @ _weight(u, scales, zeros, group_size).double().t()).float(),
                               rtol=0, atol=0)


@needs_kernel
def test_bias_is_added_and_a_row_of_zeros_gives_the_bias() -> None:
    u, scales, zeros = _groups(32, 256, 128, False, seed=4)
    kernel = Avx2Int4(u, scales, zeros, 128)
    bias = torch.randn(32)
    x = torch.randn(3, 256)
    x[1] = 0.0
    out = kernel(x, bias)
    torch.testing.assert_close(out, kernel(x) + bias, rtol=0, atol=1e-6)
    torch.testing.assert_close(out[1], bias, rtol=0, atol=0)
    with pytest.raises(ValueError, match="bias has shape"):
        kernel(x, torch.zeros(31))


@needs_kernel
def test_one_and_two_threads_agree_exactly() -> None:
    """Each output is summed by one thread in a fixed order, so the thread count cannot change it."""
    u, scales, zeros = _groups(1024, 2048, 128, True, seed=5)  # 1 MiB: the size from which two threads run
    x = torch.randn(5, 2048)
    for rows in (1, 5):
        one = Avx2Int4(u, scales, zeros, 128, threads=1)(x[:rows])
        two = Avx2Int4(u, scales, zeros, 128, threads=2)(x[:rows])
        assert torch.equal(one, two)


def test_shapes_the_kernel_cannot_take_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        Avx2Int4(torch.zeros(12, 128, dtype=torch.uint8), torch.ones(12, 1), None, 128)
    with pytest.raises(ValueError, match="multiple of group_size"):
        Avx2Int4(torch.zeros(16, 96, dtype=torch.uint8), torch.ones(16, 1), None, 64)
    with pytest.raises(ValueError, match="group_size 16"):
        Avx2Int4(torch.zeros(16, 128, dtype=torch.uint8), torch.ones(16, 8), None, 16)
    with pytest.raises(ValueError, match="scales have shape"):
        Avx2Int4(torch.zeros(16, 128, dtype=torch.uint8), torch.ones(16, 2), None, 128)
    with pytest.raises(ValueError, match="zeros have shape"):
        Avx2Int4(torch.zeros(16, 128, dtype=torch.uint8), torch.ones(16, 1), torch.zeros(16, 2), 128)


@needs_kernel
def test_an_odd_number_of_groups_and_row_blocks() -> None:
    """Three groups of 32 and three blocks of 8 rows (no pairing of blocks or groups to lean on)."""
    u, scales, zeros = _groups(24, 96, 32, False, seed=12)
    x = torch.randn(3, 96)
    ref = x @ _weight(u, scales, zeros, 32).t()
    assert float((Avx2Int4(u, scales, zeros, 32)(x) - ref).norm() / ref.norm()) < 0.02


@needs_kernel
def test_activations_of_the_wrong_width_are_refused() -> None:
    kernel = Avx2Int4(torch.zeros(16, 128, dtype=torch.uint8), torch.ones(16, 1), None, 128)
    with pytest.raises(ValueError, match=r"\[rows, 128\]"):
        kernel(torch.zeros(1, 64))
    assert kernel(torch.zeros(0, 128)).shape == (0, 16)


@needs_kernel
def test_the_compiled_library_is_reused_not_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = build(tmp_path)
    assert first.parent == tmp_path and first.suffix == ".so"
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left behind
    stamp = first.stat().st_mtime_ns
    calls: list[list[str]] = []
    real_run = subprocess.run

    def counting(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(list(args))
        return real_run(args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(cbuild.subprocess, "run", counting)
    assert build(tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert not any("-shared" in args for args in calls)  # asked the compiler's version only
    assert int4_avx2.load(first).int4_avx2_abi() == int4_avx2._ABI


def test_no_compiler_or_a_cpu_without_avx2_gives_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(UnsupportedError, match="C compiler"):
        build(tmp_path)
    monkeypatch.setenv("CC", "false")  # runs, but fails
    with pytest.raises(UnsupportedError, match="C compiler"):
        build(tmp_path)
    assert "avx2 and fma" in (cpu_lacks({"sse4_2", "avx"}) or "")
    assert cpu_lacks({"avx", "avx2", "fma"}) is None


def test_asking_for_avx2_where_it_cannot_run_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(int4_avx2, "missing", lambda: "no compiler here")
    with pytest.raises(UnsupportedError, match="no compiler here"):
        cpu_backend("avx2")


@needs_kernel
@pytest.mark.parametrize("symmetric", [True, False])
def test_int4_linear_on_avx2_reads_its_weights_back_and_moves_its_bias(symmetric: bool) -> None:
    u, scales, zeros = _groups(32, 256, 64, symmetric, seed=6)
    q = u.to(torch.int8) - (8 if symmetric else 0)
    bias = torch.randn(32)
    layer = Int4Linear.from_groups(q, scales, zeros, 64, bias, backend="avx2")
    assert layer.backend == "avx2" and "backend=avx2" in repr(layer) and layer.packed.numel() == 0
    weight = _weight(u, scales.to(torch.bfloat16).float(), zeros, 64)
    torch.testing.assert_close(layer.dequantize(), weight, rtol=0, atol=0)
    back_q, back_scales, back_zeros = layer.groups()
    assert torch.equal(back_q, q) and (back_zeros is None) == symmetric
    assert torch.equal(back_scales, scales.to(torch.bfloat16).float())
    assert back_zeros is None or torch.equal(back_zeros, zeros.to(torch.int8))  # type: ignore[union-attr]
    x = torch.randn(2, 3, 256)
    ref = x @ weight.t() + bias
    out = layer(x)
    assert out.shape == (2, 3, 32) and float((out - ref).norm() / ref.norm()) < 0.02
    assert layer.weight_bytes == 32 * 256 // 2 + 4 * 32 * 4 + (0 if symmetric else 32 * 4) + 32 * 4
    layer.to(torch.float16)
    assert layer.backend == "avx2" and layer.bias is not None and layer.bias.dtype == torch.float16
    assert layer(x.half()).dtype == torch.float16




@needs_kernel
def test_bfloat16_is_read_and_written_directly() -> None:
    """bf16 activations widen exactly to the float32 ones; a bf16 output is the float32 one rounded to nearest
    even; other dtypes go through float32."""
    u, scales, zeros = _groups(32, 256, 128, True, seed=13)
    kernel = Avx2Int4(u, scales, zeros, 128)
    x = torch.randn(3, 256).to(torch.bfloat16)
    wide = kernel(x.float())
    assert torch.equal(kernel(x), wide)
    narrow = kernel(x, out_dtype=torch.bfloat16)
    assert narrow.dtype == torch.bfloat16 and torch.equal(narrow, wide.to(torch.bfloat16))
    half = kernel(x.half(), out_dtype=torch.float16)
    assert half.dtype == torch.float16 and torch.equal(half, kernel(x.half().float()).half())
