"""4-bit grouped products by our own AVX2 + FMA kernel (`int4_avx2.c`), built on first use with the system C
compiler.

Why: onnxruntime's MatMulNBits (`int4_ort`) is compute bound enough on an AVX2-only CPU that its speed halves
when the weights come from DRAM instead of cache (measured on the shared 2-core EPYC: ~20-23 GB/s cached,
~12 GB/s streaming 24 layers, against 25-36 GB/s for a plain copy). This kernel does the int8 dot products
on blocks of 8 output rows interleaved so that one 32-byte load feeds 64 weights with no horizontal sums,
prefetches ahead of its stream, and splits row blocks across threads in contiguous ranges. Measured on the
same machine (2 threads, [8192, 3072] groups of 128, one row, others' jobs running): ~23-25 GB/s from cache
(MatMulNBits ~12), 12-15 GB/s streaming 24 layers (MatMulNBits ~10, copy 18-22, a read-only sum 14-16);
128 rows of a [3072, 3072] layer in 18 ms (MatMulNBits 25 ms).

Numerics are those of MatMulNBits' accuracy level 4: activations rounded to int8 per group (scale = group
absmax / 127), integer dot products, float32 scales: weight = (u - zero) * scale with u in 0..15 and zero 8
for symmetric groups. One copy of the weights serves every row count (prefill blocks output rows so each
block is reused from cache by all activation rows).

The shared library is compiled (`-O3 -mavx2 -mfma -fopenmp -fPIC -shared`) into `<cache>/kernels/`
(`$STEPAUDIO_CACHE` or `~/.cache/stepaudio`) by `kernels.cbuild`. It links libgomp.so.1, which resolves to
the OpenMP runtime torch already loaded: one thread pool, not two.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from stepaudio.errors import UnsupportedError
from stepaudio.kernels.cbuild import build_library, cpu_flags

__all__ = ["FLAGS", "ROWS", "Avx2Int4", "build", "cpu_lacks", "missing", "pack", "unpack"]

SOURCE = Path(__file__).with_name("int4_avx2.c")
FLAGS = ("-O3", "-mavx2", "-mfma", "-fopenmp", "-fPIC", "-shared")
ROWS = 8  # output rows interleaved in a block (a vector's 32-bit lanes); out_features must be a multiple of it
GROUP_SIZES = (32, 64, 128, 256)
_ABI = 2  # int4_avx2_abi() of the source this wrapper speaks to
_ERRORS = {-1: "out_features must be a multiple of 8", -2: "group size must be 32, 64, 128 or 256 "
           "and divide in_features", -3: "out of memory for the activation buffer"}


def cpu_lacks(flags: set[str] | None = None) -> str | None:
    """Why this CPU cannot run the kernel (a sentence), or None: it needs AVX2 and FMA, asked at run time
    (`flags`: /proc/cpuinfo's, read when None; where there are none, torch's CPU capability decides)."""
    capability = torch.backends.cpu.get_cpu_capability()
    if flags is None:
        flags = cpu_flags() or set()
    if flags:
        absent = [f for f in ("avx2", "fma") if f not in flags]
        if absent:
            return f"the AVX2 int4 kernel needs {' and '.join(absent)}, which this CPU lacks"
        return None
    if capability in ("AVX2", "AVX512"):  # no /proc/cpuinfo: torch's dispatch level implies AVX2 and FMA
        return None
    return f"the AVX2 int4 kernel needs AVX2 and FMA; torch reports CPU capability {capability}"


def _cache_dir() -> Path:
    from stepaudio.kernels.choices import cache_path

    return cache_path().parent / "kernels"


def build(cache_dir: Path | None = None, cc: str | None = None) -> Path:
    """The shared library for this source and compiler, compiled into `cache_dir` unless already there.
    UnsupportedError (with the compiler's output) where it cannot be built."""
    return build_library("the AVX2 int4 kernel", SOURCE, FLAGS, cache_dir or _cache_dir(), cc)


def load(path: Path) -> Any:
    """The library at `path` with its function's argument types set (ctypes releases the GIL during calls)."""
    library = ctypes.CDLL(str(path))
    if library.int4_avx2_abi() != _ABI:
        raise UnsupportedError(f"{path} speaks ABI {library.int4_avx2_abi()}, this wrapper {_ABI}")
    fn = library.int4_avx2_matmul
    p, i = ctypes.c_void_p, ctypes.c_int
    fn.argtypes = [p, i, i, p, p, p, i, i, p, p, i, i]
    fn.restype = i
    return library


@lru_cache(maxsize=1)
def _library() -> Any:
    reason = cpu_lacks()
    if reason is not None:
        raise UnsupportedError(reason)
    return load(build())


@lru_cache(maxsize=1)
def missing() -> str | None:
    """Why the kernel cannot run here (a sentence), or None: the CPU has AVX2 and FMA, it compiles and loads,
    and a probe with integer values gives the exact product."""
    try:
        _library()
        u = torch.arange(16 * 128, dtype=torch.int64).remainder(16).to(torch.uint8).reshape(16, 128)
        probe = Avx2Int4(u, torch.ones(16, 2), None, 64)
        x = torch.zeros(2, 128)
        x[:, 5], x[1, 70] = 127.0, -127.0  # one-hot-ish rows round to int8 exactly
        got = probe(x)
    except UnsupportedError as exc:
        return str(exc)
    expected = x @ (u.to(torch.float32) - 8).t()
    if not torch.equal(got, expected):
        return "the AVX2 int4 kernel gave a wrong product on a probe; not using it"
    return None


def pack(nibbles: torch.Tensor) -> torch.Tensor:
    """uint8 u [out, in] (0..15, out a multiple of 8, in of 8) -> [out / 8, in / 8, 8, 4]: per block of 8 rows
    and 8 inputs k.., row i's 4 bytes, byte j holding input k + j (low nibble) and k + 4 + j (high nibble)."""
    out_features, in_features = nibbles.shape
    u = nibbles.to(torch.uint8).reshape(out_features // ROWS, ROWS, in_features // 8, 2, 4).permute(0, 2, 1, 3, 4)
    return (u[..., 0, :] | (u[..., 1, :] << 4)).contiguous()


def unpack(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of `pack`: uint8 [out, in]."""
    blocks, steps = packed.shape[:2]
    u = torch.stack([packed & 15, packed >> 4], dim=3)  # [blocks, steps, 8, 2, 4]
    return u.permute(0, 2, 1, 3, 4).reshape(blocks * ROWS, steps * 8)


def _tile(per_row: torch.Tensor) -> torch.Tensor:
    """[out, groups] -> [out / 8, groups, 8]: a group's values for a block of rows side by side."""
    out_features, groups = per_row.shape
    return per_row.reshape(out_features // ROWS, ROWS, groups).transpose(1, 2).contiguous()


def _untile(tiled: torch.Tensor) -> torch.Tensor:
    return tiled.transpose(1, 2).reshape(-1, tiled.shape[1])


class Avx2Int4:
    """A 4-bit weight [out, in]: weight = (u - zero) * scale per group of `group_size` inputs, zero 8 where
    `zeros` is None. Call with float [rows, in] (any row count) -> float32 [rows, out]."""

    def __init__(self, nibbles: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, group_size: int,
                 threads: int = 0) -> None:
        """`threads`: 0 follows torch.get_num_threads() at each call."""
        out_features, in_features = nibbles.shape
        if group_size not in GROUP_SIZES:
            raise ValueError(f"group_size {group_size} is not one the AVX2 int4 kernel takes: {GROUP_SIZES}")
        if in_features % group_size or in_features == 0:
            raise ValueError(f"in_features {in_features} must be a positive multiple of group_size {group_size}")
        if out_features % ROWS:
            raise ValueError(f"out_features {out_features} must be a multiple of {ROWS} for the AVX2 int4 kernel")
        groups = (out_features, in_features // group_size)
        if tuple(scales.shape) != groups:
            raise ValueError(f"scales have shape {tuple(scales.shape)}; expected {groups}")
        if zeros is not None and tuple(zeros.shape) != groups:
            raise ValueError(f"zeros have shape {tuple(zeros.shape)}; expected {groups}")
        self.library = _library()
        self.out_features, self.in_features, self.group_size = out_features, in_features, group_size
        self.threads = threads
        self.packed = pack(nibbles.cpu())
        self.tiled_scales = _tile(scales.detach().to(device="cpu", dtype=torch.float32))
        self.tiled_zeros = None if zeros is None else _tile(zeros.detach().to(device="cpu", dtype=torch.uint8))

    @property
    def scales(self) -> torch.Tensor:
        """float32 [out, groups]."""
        return _untile(self.tiled_scales)

    @property
    def zeros(self) -> torch.Tensor | None:
        """uint8 [out, groups], or None (symmetric: zero 8)."""
        return None if self.tiled_zeros is None else _untile(self.tiled_zeros)

    def __call__(self, x: torch.Tensor, bias: torch.Tensor | None = None,
                 out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """x [rows, in] (float32 and bfloat16 read as they are, others as float32) -> [rows, out] (+ bias,
        [out]) in `out_dtype` (float32 and bfloat16 written directly)."""
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected activations [rows, {self.in_features}]; got {tuple(x.shape)}")
        a = x.detach()
        if a.dtype not in (torch.float32, torch.bfloat16) or a.device.type != "cpu":
            a = a.to(device="cpu", dtype=torch.float32)
        a = a.contiguous()
        b = None
        if bias is not None:
            if tuple(bias.shape) != (self.out_features,):
                raise ValueError(f"bias has shape {tuple(bias.shape)}; expected ({self.out_features},)")
            b = bias.detach().to(device="cpu", dtype=torch.float32).contiguous()
        direct = out_dtype in (torch.float32, torch.bfloat16)
        out = torch.empty(a.shape[0], self.out_features, dtype=out_dtype if direct else torch.float32)
        flags = (a.dtype == torch.bfloat16) | (out.dtype == torch.bfloat16) << 1
        code = self.library.int4_avx2_matmul(
            a.data_ptr(), a.shape[0], self.in_features, self.packed.data_ptr(), self.tiled_scales.data_ptr(),
            None if self.tiled_zeros is None else self.tiled_zeros.data_ptr(), self.out_features, self.group_size,
            None if b is None else b.data_ptr(), out.data_ptr(), flags, self.threads or torch.get_num_threads())
        if code != 0:
            raise ValueError(f"AVX2 int4 kernel refused the call: {_ERRORS.get(code, code)}")
        return out if direct else out.to(out_dtype)

    @property
    def weight_bytes(self) -> int:
        """Bytes one call reads: half a byte a weight, a float32 scale a group, a byte a zero point."""
        groups = self.tiled_scales.numel()
        return self.out_features * self.in_features // 2 + 4 * groups + (0 if self.tiled_zeros is None else groups)

    def nibbles(self) -> torch.Tensor:
        """The stored u (uint8 [out, in], 0..15), unpacked exactly."""
        return unpack(self.packed)
