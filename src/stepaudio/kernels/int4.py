"""A linear layer on 4-bit grouped weights: onnxruntime's MatMulNBits or PyTorch's int4 kernels on CPU, torch on CUDA.

Weights are 4-bit integers in groups of `group_size` along the input dimension, each group with a scale and,
for asymmetric schemes (AWQ, GPTQ with zero points), an integer zero point: weight = (q - zero) * scale.
That is half a byte per weight plus 4 bytes a group, a quarter of bf16, so a memory-bound decode step reads
4x fewer bytes.

The kernels (`_weight_int4pack_mm_for_cpu`, `_weight_int4pack_mm` on CUDA) read unsigned nibbles u in 0..15
and a bf16 table [in / group, out, 2] of (scale, offset) per group, and compute w = (u - 8) * scale + offset.
So a symmetric q in -8..7 is stored as u = q + 8 with offset 0, and an asymmetric q in 0..15 with zero z as
u = q with offset (8 - z) * scale. Both kernels take bf16 activations only (the CPU one has an fp32 path
too, but it is scalar code, ~15x slower on an AVX2 Xeon), so inputs are cast to bf16 and results back.

The CPU and CUDA kernels want different packings: the CPU one blocks rows for its SIMD width (32 rows on
AVX2, 64 on AVX-512), the CUDA one lays nibbles out as tensor-core tiles. `.to(device)` unpacks to plain
nibbles and repacks for the target; the packed tensor is kept out of the state dict (its layout depends
on the machine): export with `groups()`.

On CPU a layer runs on one of these backends, fixed when it is built (`backend=`, default `auto`):
* `torch`: the packing above.
* `ort` (`stepaudio.kernels.int4_ort`): one onnxruntime MatMulNBits session a layer, activations rounded to
  int8 per group (accuracy level 4); `ort-exact` multiplies in fp32 (level 0). The session holds the only
  copy of the weights, so reading them back (`nibbles`, `groups`, a move to CUDA) goes through it: exact but
  slow for large layers; build on the device the model will run on.
* `avx2` (`stepaudio.kernels.int4_avx2`): our own AVX2 + FMA kernel, compiled on first use, with the
  numerics of `ort` (int8 activations per group); it keeps plain nibbles in its own layout (read back
  cheaply) and serves every row count from that one copy.
`auto` times the available ones once per machine (`cpu_int4_kernel`, cached like the other kernel choices)
and keeps torch where neither onnxruntime nor the AVX2 kernel can run (with a warning). Measured on the
shared 2-core AVX2 EPYC: MatMulNBits streams a [8192, 3072] weight at one row ~3x faster than torch's kernel
and runs 128 rows 2.7x faster; see `int4_avx2` for why a kernel of our own streams faster still.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from stepaudio.errors import UnsupportedError
from stepaudio.kernels import int4_avx2
from stepaudio.kernels.int4_avx2 import Avx2Int4
from stepaudio.kernels.int4_ort import ACCURACY_EXACT, ACCURACY_INT8, MatMulNBits, OrtInt4Options, missing

GROUP_SIZES = (32, 64, 128, 256)  # what both kernels accept
ROW_MULTIPLE = 16  # the CPU packing takes out_features in multiples of 16 (CUDA: 8)
_CHUNK_ROWS = 2048  # rows packed or quantised at a time (a multiple of every CPU row block), to bound temporaries
BACKENDS = ("auto", "torch", "ort", "ort-exact", "avx2")  # CPU backends; CUDA always runs torch's kernel


class Int4Linear(nn.Module):
    """Linear layer with 4-bit grouped weights and an optional float bias; output dtype follows the input.

    Build it with `quantize` (round to nearest from float weights) or `from_groups` (integers and scales
    from a quantised checkpoint)."""

    def __init__(self, packed: torch.Tensor, scales_and_zeros: torch.Tensor, *, in_features: int,
                 out_features: int, group_size: int, symmetric: bool, bias: torch.Tensor | None = None,
                 kernel: MatMulNBits | Avx2Int4 | None = None) -> None:
        """`packed` is torch's layout, or an empty CPU tensor where `kernel` (an onnxruntime session or the
        AVX2 kernel) holds the weights."""
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.group_size, self.symmetric = group_size, symmetric
        self.kernel = kernel
        self.packed: torch.Tensor
        self.scales_and_zeros: torch.Tensor
        self.bias: torch.Tensor | None
        # kernel layouts depend on the device and CPU; groups() is the portable form
        self.register_buffer("packed", packed, persistent=False)
        self.register_buffer("scales_and_zeros", scales_and_zeros, persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach())

    @classmethod
    def quantize(cls, weight: torch.Tensor, bias: torch.Tensor | None = None, *, group_size: int = 128,
                 symmetric: bool = True, backend: str = "auto") -> Int4Linear:
        """Round-to-nearest 4-bit groups of a float weight [out, in], on the weight's device (`backend`: the
        CPU one, see the module docstring).

        Symmetric: scale = max|w| / 7.5 per group, q = round(w / scale) in -8..7. Asymmetric: scale =
        (max - min) / 15, zero = round(-min / scale) in 0..15, q = round(w / scale) + zero in 0..15."""
        out_features, in_features = check_shape(tuple(weight.shape), group_size)
        _check_device(weight.device)
        nibbles = torch.empty(out_features, in_features, dtype=torch.uint8, device=weight.device)
        table = torch.empty(in_features // group_size, out_features, 2, dtype=torch.bfloat16, device=weight.device)
        zeros = None if symmetric else torch.empty(out_features, in_features // group_size, dtype=torch.uint8,
                                                   device=weight.device)
        for start in range(0, out_features, _CHUNK_ROWS):
            rows = slice(start, start + _CHUNK_ROWS)
            w = weight[rows].detach().to(torch.float32, copy=True).reshape(-1, in_features // group_size, group_size)
            if symmetric:
                scale = _bf16((w.abs().amax(dim=-1) / 7.5).clamp(min=1e-8))
                offset = torch.zeros_like(scale)
                q = w.div_(scale[..., None]).round_().clamp_(-8, 7).add_(8)
            else:
                low, high = w.amin(dim=-1), w.amax(dim=-1)
                scale = _bf16(((high - low) / 15.0).clamp(min=1e-8))
                zero = torch.round(-low / scale).clamp(0, 15)
                offset = (8.0 - zero) * scale
                q = w.div_(scale[..., None]).round_().add_(zero[..., None]).clamp_(0, 15)
                assert zeros is not None
                zeros[rows] = zero.to(torch.uint8)
            nibbles[rows] = q.to(torch.uint8).reshape(-1, in_features)
            table[:, rows, 0] = scale.t().to(torch.bfloat16)
            table[:, rows, 1] = offset.t().to(torch.bfloat16)
        return cls._build(nibbles, table, zeros, group_size, bias, backend)

    @classmethod
    def from_groups(cls, q: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, group_size: int,
                    bias: torch.Tensor | None = None, *, backend: str = "auto") -> Int4Linear:
        """Integers q [out, in] (-8..7 without zeros, 0..15 with), scales [out, in // group_size] and integer
        zero points of the same shape or None: weight = (q - zero) * scale. On q's device (`backend`: the CPU
        one). Scales are rounded to bf16 (what torch's kernels read; MatMulNBits gets the same values)."""
        out_features, in_features = check_shape(tuple(q.shape), group_size)
        _check_device(q.device)
        groups = (out_features, in_features // group_size)
        if tuple(scales.shape) != groups:
            raise ValueError(f"scales have shape {tuple(scales.shape)}; expected {groups} "
                             f"(out_features, in_features // group_size)")
        if zeros is not None and tuple(zeros.shape) != groups:
            raise ValueError(f"zeros have shape {tuple(zeros.shape)}; expected {groups}")
        if q.dtype.is_floating_point or (zeros is not None and zeros.dtype.is_floating_point):
            raise ValueError("q and zeros must be integer tensors (zero points are integers)")
        low, high = (-8, 7) if zeros is None else (0, 15)
        if q.numel() and (int(q.min()) < low or int(q.max()) > high):
            raise ValueError(f"q must lie in {low}..{high} {'without' if zeros is None else 'with'} zero points; "
                             f"got {int(q.min())}..{int(q.max())}")
        if zeros is not None and zeros.numel() and (int(zeros.min()) < 0 or int(zeros.max()) > 15):
            raise ValueError("zero points must lie in 0..15")
        nibbles = (q.to(torch.int16) + (8 if zeros is None else 0)).to(torch.uint8)
        scale = scales.detach().to(torch.float32)
        offset = torch.zeros_like(scale) if zeros is None else (8.0 - zeros.to(torch.float32)) * _bf16(scale)
        table = torch.stack([scale, offset], dim=-1).transpose(0, 1).to(torch.bfloat16).contiguous()
        zero_points = None if zeros is None else zeros.to(device=q.device, dtype=torch.uint8)
        return cls._build(nibbles.to(q.device), table.to(q.device), zero_points, group_size, bias, backend)

    @classmethod
    def _build(cls, nibbles: torch.Tensor, table: torch.Tensor, zeros: torch.Tensor | None, group_size: int,
               bias: torch.Tensor | None, backend: str) -> Int4Linear:
        """From nibbles u [out, in], the (scale, offset) table and the integer zeros (None: symmetric)."""
        out_features, in_features = nibbles.shape
        kernel: MatMulNBits | Avx2Int4 | None = None
        chosen = cpu_backend(backend) if nibbles.device.type == "cpu" else "torch"
        if chosen == "avx2":
            kernel = Avx2Int4(nibbles, table[..., 0].to(torch.float32).t(), zeros, group_size)
            packed = torch.empty(0, dtype=torch.uint8)
        elif chosen != "torch":
            kernel = _ort_kernel(nibbles, table, zeros, group_size, chosen)
            packed = torch.empty(0, dtype=torch.uint8)
        else:
            packed = _pack(nibbles, group_size)
        return cls(packed, table, in_features=in_features, out_features=out_features, group_size=group_size,
                   symmetric=zeros is None, bias=bias, kernel=kernel)

    @property
    def backend(self) -> str:
        """What runs the product: `torch`, `ort`, `ort-exact` or `avx2`."""
        if self.kernel is None:
            return "torch"
        if isinstance(self.kernel, Avx2Int4):
            return "avx2"
        return "ort-exact" if self.kernel.options.accuracy_level == ACCURACY_EXACT else "ort"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.kernel, Avx2Int4):
            out = self.kernel(x.reshape(-1, self.in_features), self.bias, x.dtype)
            return out.reshape(*x.shape[:-1], self.out_features)
        if self.kernel is not None:
            out = self.kernel(x.reshape(-1, self.in_features)).to(x.dtype)
            if self.bias is not None:
                out = out + self.bias.to(x.dtype)
            return out.reshape(*x.shape[:-1], self.out_features)
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16).contiguous()
        if self.packed.device.type == "cuda":
            out = torch.ops.aten._weight_int4pack_mm(flat, self.packed, self.group_size, self.scales_and_zeros)
        else:
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, self.group_size,
                                                             self.scales_and_zeros)
        out = out.to(x.dtype)
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)

    def nibbles(self) -> torch.Tensor:
        """The stored 4-bit values u (uint8 [out, in], 0..15; weight = (u - 8) * scale + offset). On the
        onnxruntime backend they are read back through the session (slow for large layers), on `avx2` unpacked."""
        if self.kernel is not None:
            return self.kernel.nibbles()
        return _unpack(self.packed, self.out_features, self.in_features, self.group_size)

    def dequantize(self) -> torch.Tensor:
        """The float32 weight [out, in] the kernels multiply by (scales and offsets as stored, in bf16;
        MatMulNBits: (u - zero) * scale with the integer zero, where torch adds a bf16 offset)."""
        if self.kernel is not None:
            scale = self.kernel.scales.repeat_interleave(self.group_size, dim=1)
            zero = 8.0 if self.kernel.zeros is None else self.kernel.zeros.to(torch.float32).repeat_interleave(
                self.group_size, dim=1)
            return (self.nibbles().to(torch.float32) - zero) * scale
        table = self.scales_and_zeros.to(torch.float32)  # [groups, out, 2]
        scale = table[..., 0].t().repeat_interleave(self.group_size, dim=1)
        offset = table[..., 1].t().repeat_interleave(self.group_size, dim=1)
        return (self.nibbles().to(torch.float32) - 8.0) * scale + offset

    def groups(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(q, scales, zeros) as `from_groups` takes them: int8 q, float32 scales, int8 zeros or None."""
        table = self.scales_and_zeros.to(torch.float32)
        scales = table[..., 0].t().contiguous()
        u = self.nibbles()
        if self.symmetric:
            return (u.to(torch.int16) - 8).to(torch.int8), scales, None
        if self.kernel is not None and self.kernel.zeros is not None:
            return u.to(torch.int8), scales, self.kernel.zeros.to(torch.int8)
        zeros = 8 - torch.round(table[..., 1].t() / scales.clamp(min=1e-30))
        return u.to(torch.int8), scales, zeros.clamp(0, 15).to(torch.int8)

    @property
    def weight_bytes(self) -> int:
        """What one call reads: half a byte per weight, the (scale, offset) table and the bias."""
        if self.kernel is not None:
            total = self.kernel.weight_bytes
            return total + (0 if self.bias is None else self.bias.numel() * self.bias.element_size())
        total = self.packed.numel() * self.packed.element_size()
        total += self.scales_and_zeros.numel() * self.scales_and_zeros.element_size()
        return total + (0 if self.bias is None else self.bias.numel() * self.bias.element_size())

    def _apply(self, fn: Any, recurse: bool = True) -> Int4Linear:
        """Device moves rebuild for the target (its packing; on CPU the `auto` backend); dtype casts leave the
        scales alone (the kernels need them as they are) and convert only the bias."""
        device = fn(torch.empty(0, device=self.packed.device)).device
        if device != self.packed.device:
            _check_device(device)
            q, scales, zeros = self.groups()
            moved = Int4Linear.from_groups(q.to(device), scales.to(device),
                                           None if zeros is None else zeros.to(device), self.group_size)
            self.packed, self.scales_and_zeros, self.kernel = moved.packed, moved.scales_and_zeros, moved.kernel
        if self.bias is not None:
            self.bias = fn(self.bias)
        return self

    def extra_repr(self) -> str:
        scheme = "symmetric" if self.symmetric else "zero points"
        return (f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}, "
                f"{scheme}, bias={self.bias is not None}, backend={self.backend}")


def cpu_backend(name: str = "auto") -> str:
    """The CPU backend `name` resolves to here: `torch`, `ort`, `ort-exact` or `avx2`. `auto`: the measured
    `cpu_int4_kernel` choice among those that can run, torch (with a warning) where neither onnxruntime's
    MatMulNBits nor the AVX2 kernel can; asking for a backend that cannot run raises UnsupportedError."""
    if name not in BACKENDS:
        raise ValueError(f"unknown int4 backend {name!r}; choose one of {BACKENDS}")
    if name == "torch":
        return name
    if name != "auto":
        reason = int4_avx2.missing() if name == "avx2" else missing()
        if reason is not None:
            raise UnsupportedError(reason)
        return name
    available = available_backends()
    if available == ("torch",):
        warnings.warn(f"CPU int4 runs on torch's kernel, compute-bound on AVX2: {missing()}; "
                      f"{int4_avx2.missing()}", stacklevel=3)
        return "torch"
    choice = cpu_int4_kernel().choice
    # a cached choice made where a backend could run (a compiler since removed): the next best that can
    return choice if choice in available else available[-1]


def available_backends() -> tuple[str, ...]:
    """The `auto` candidates that run here, torch (the baseline) first."""
    return ("torch", *(["ort"] if missing() is None else []), *(["avx2"] if int4_avx2.missing() is None else []))


def _ort_kernel(nibbles: torch.Tensor, table: torch.Tensor, zeros: torch.Tensor | None, group_size: int,
                backend: str) -> MatMulNBits:
    level = ACCURACY_EXACT if backend == "ort-exact" else ACCURACY_INT8
    scales = table[..., 0].to(torch.float32).t()
    return MatMulNBits(nibbles, scales, zeros, group_size, OrtInt4Options(accuracy_level=level))


# The CPU int4 backend: torch's kernel, MatMulNBits or the AVX2 kernel (both int8 activations), timed like the
# bf16 question in `choices`: three [8192, 3072] weights at one row (38 MB, more than a 32 MB L3) and one
# [3072, 3072] at 128, the same weights for every candidate. /2 added avx2.
INT4_QUESTION = "int4-cpu-kernel/2"


def cpu_int4_kernel(*, remeasure: bool | None = None) -> Any:
    """`torch`, `ort` or `avx2` (those that run here), by `choices.cheapest_request` over a 128-row prefill and
    128 decode steps; cached."""
    from stepaudio.kernels.choices import choose

    return choose(INT4_QUESTION, _measure_cpu_int4, remeasure=remeasure)


def _measure_cpu_int4() -> Any:
    from stepaudio.kernels.choices import Measured, cheapest_request, time_calls

    generator = torch.Generator().manual_seed(0)

    def layers(out_features: int, in_features: int, count: int) -> dict[str, list[Callable[..., Any]]]:
        built: dict[str, list[Callable[..., Any]]] = {name: [] for name in available_backends()}
        for _ in range(count):
            q = torch.randint(-8, 8, (out_features, in_features), dtype=torch.int8, generator=generator)
            scales = torch.full((out_features, in_features // 128), 0.01)
            for backend in built:
                built[backend].append(Int4Linear.from_groups(q, scales, None, 128, backend=backend))
        return built

    def run_all(fns: list[Callable[..., Any]], x: torch.Tensor) -> Callable[[], object]:
        return lambda: [fn(x) for fn in fns]

    one = torch.full((1, 3072), 0.5, dtype=torch.bfloat16)
    many = torch.full((128, 3072), 0.5, dtype=torch.bfloat16)
    with torch.inference_mode():
        wide = layers(8192, 3072, 3)
        dec = time_calls({name: run_all(fns, one) for name, fns in wide.items()}, repeats=9, budget_s=0.5)
        del wide
        square = layers(3072, 3072, 1)
        pre = time_calls({name: run_all(fns, many) for name, fns in square.items()}, repeats=5, budget_s=0.5)
    dec = {name: t / 3 for name, t in dec.items()}
    return Measured(cheapest_request(pre, dec, 128), {"prefill": pre, "decode": dec})


def check_shape(shape: tuple[int, ...], group_size: int) -> tuple[int, int]:
    """(out, in) of a weight shape the int4 kernels take; ValueError naming the rule it breaks."""
    if group_size not in GROUP_SIZES:
        raise ValueError(f"group_size {group_size} is not one the int4 kernels take: {GROUP_SIZES}")
    if len(shape) != 2:
        raise ValueError(f"an int4 weight is 2-D [out, in]; got shape {shape}")
    out_features, in_features = shape
    if in_features % group_size:
        raise ValueError(f"in_features {in_features} is not a multiple of group_size {group_size}")
    if out_features % ROW_MULTIPLE or out_features == 0:
        raise ValueError(f"out_features {out_features} is not a positive multiple of {ROW_MULTIPLE} "
                         "(the CPU int4 packing works in blocks of 16 rows)")
    return out_features, in_features


def fits(out_features: int, in_features: int, group_size: int = 128) -> int | None:
    """The group size to use for a layer: `group_size` or the largest smaller one that divides in_features;
    None where no group size fits (or out_features is not a multiple of 16)."""
    if out_features % ROW_MULTIPLE or out_features == 0:
        return None
    for size in sorted((g for g in GROUP_SIZES if g <= group_size), reverse=True):
        if in_features % size == 0:
            return size
    return None


def _bf16(t: torch.Tensor) -> torch.Tensor:
    """Round to bf16 and back: the kernels read scales in bf16, so quantise against those values."""
    return t.to(torch.bfloat16).to(torch.float32)


def _check_device(device: torch.device) -> None:
    if device.type == "cpu":
        if not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):
            raise UnsupportedError(f"this torch ({torch.__version__}) has no CPU int4 kernel "
                                   "(_weight_int4pack_mm_for_cpu); use the int8 weight format")
        return
    if device.type == "cuda":
        if not hasattr(torch.ops.aten, "_weight_int4pack_mm"):
            raise UnsupportedError(f"this torch ({torch.__version__}) has no CUDA int4 kernel (_weight_int4pack_mm)")
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            raise UnsupportedError(f"the CUDA int4 kernel needs compute capability 8.0 or newer (Ampere); "
                                   f"{torch.cuda.get_device_name(device)} has {major}.{minor}")
        return
    raise UnsupportedError(f"no int4 kernel for device type {device.type!r}; use cpu or cuda")


def _inner_k_tiles(in_features: int) -> int:
    """k-tiles of 16 packed side by side in the CUDA layout: 8 (16-byte loads) where in_features allows."""
    return next(t for t in (8, 4, 2) if in_features % (16 * t) == 0)


def _pack(nibbles: torch.Tensor, group_size: int) -> torch.Tensor:
    """The kernel layout of uint8 nibbles [out, in] (values 0..15) on their device."""
    out_features, in_features = nibbles.shape
    if nibbles.device.type == "cuda":
        # two k-neighbours a byte, the even one in the high nibble (what _convert_weight_to_int4pack reads)
        pairs = ((nibbles[:, 0::2] << 4) | nibbles[:, 1::2]).contiguous()
        return torch.ops.aten._convert_weight_to_int4pack(pairs, _inner_k_tiles(in_features))
    packed = torch.empty(out_features, in_features // 2, dtype=torch.uint8)
    for start in range(0, out_features, _CHUNK_ROWS):  # row blocks are packed independently
        chunk = nibbles[start:start + _CHUNK_ROWS].to(torch.int32)
        packed[start:start + _CHUNK_ROWS] = torch.ops.aten._convert_weight_to_int4pack_for_cpu(chunk, 1)
    return packed


def _unpack(packed: torch.Tensor, out_features: int, in_features: int, group_size: int) -> torch.Tensor:
    if packed.device.type == "cuda":
        return _unpack_cuda(packed, out_features, in_features, group_size)
    return _unpack_cpu(packed, out_features, in_features)


def _unpack_cuda(packed: torch.Tensor, out_features: int, in_features: int, group_size: int) -> torch.Tensor:
    """Nibbles back from the tensor-core layout by the kernel itself: identity rows, scale 1, offset 8,
    so the product is u exactly (small integers in bf16). Costs a [in, in] x [in, out] product, cheap on a GPU."""
    table = torch.tensor([1.0, 8.0], dtype=torch.bfloat16, device=packed.device)
    table = table.expand(in_features // group_size, out_features, 2).contiguous()
    nibbles = torch.empty(out_features, in_features, dtype=torch.uint8, device=packed.device)
    for start in range(0, in_features, 4096):
        rows = min(4096, in_features - start)
        eye = torch.zeros(rows, in_features, dtype=torch.bfloat16, device=packed.device)
        index = torch.arange(rows, device=packed.device)
        eye[index, start + index] = 1.0
        product = torch.ops.aten._weight_int4pack_mm(eye, packed, group_size, table)  # [rows, out]
        nibbles[:, start:start + rows] = product.t().round().to(torch.uint8)
    return nibbles


@lru_cache(maxsize=1)
def _cpu_block_rows() -> int:
    """Rows the CPU packing puts in one block (32 with AVX2, 64 with AVX-512): found by packing a probe whose
    values are the column index, and seeing where column 1 starts."""
    probe = torch.arange(2, dtype=torch.int32).repeat(256, 1)  # [256, 2]: column k holds k
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(probe, 1).flatten()
    nibble_columns = torch.stack([packed & 15, packed >> 4], dim=-1).flatten()
    return int(torch.nonzero(nibble_columns == 1)[0, 0])


@lru_cache(maxsize=8)
def _cpu_row_order(rows: int) -> torch.Tensor:
    """For a block of `rows` rows, the row each nibble of one packed column holds (low nibble first)."""
    index = torch.arange(rows, dtype=torch.int32)[:, None].repeat(1, 2)
    found = torch.zeros(rows, dtype=torch.int64)
    for shift in (0, 4):
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu((index >> shift) & 15, 1).flatten()[: rows // 2]
        found += torch.stack([packed & 15, packed >> 4], dim=-1).flatten().to(torch.int64) << shift
    if not torch.equal(found.sort().values, torch.arange(rows)):
        raise UnsupportedError("unrecognised CPU int4 packing in this torch build; cannot move int4 weights off it")
    return torch.argsort(found)  # nibble position of each row


def _unpack_cpu(packed: torch.Tensor, out_features: int, in_features: int) -> torch.Tensor:
    """Nibbles [out, in] from the CPU packing: blocks of `_cpu_block_rows()` rows (a smaller tail block),
    each stored column by column. Checked by repacking the first and last blocks."""
    block = _cpu_block_rows()
    flat = packed.reshape(-1)
    nibbles = torch.empty(out_features, in_features, dtype=torch.uint8)
    start = 0
    while start < out_features:
        rows = min(block, out_features - start)
        full = (out_features - start) // rows if rows == block else 1
        count = full * rows
        raw = flat[start * in_features // 2:(start + count) * in_features // 2].view(full, in_features, rows // 2)
        positions = torch.stack([raw & 15, raw >> 4], dim=-1).reshape(full, in_features, rows)
        ordered = positions[..., _cpu_row_order(rows)]  # [blocks, in, rows]
        nibbles[start:start + count] = ordered.transpose(1, 2).reshape(count, in_features)
        start += count
    for first in {0, (out_features - 1) // block * block}:
        span = slice(first, first + block)
        again = torch.ops.aten._convert_weight_to_int4pack_for_cpu(nibbles[span].to(torch.int32), 1)
        if not torch.equal(again, packed[span]):
            raise UnsupportedError("unrecognised CPU int4 packing in this torch build; cannot unpack int4 weights")
    return nibbles
