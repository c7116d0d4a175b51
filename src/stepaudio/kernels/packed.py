"""Linears on weights packed once for the CPU kernels: int8 for FBGEMM, bf16 for oneDNN.

Plain `F.linear` hands oneDNN a row-major weight that it re-blocks inside every call; at batch 1 that
costs a second pass over memory. Packing once removes it (measured on a 2-core AMX Xeon: bf16 matrix x
vector 16-17 -> 22 GB/s, with bit-identical results at decode shapes).

int8 on FBGEMM, the fastest dynamic-int8 path on x86 CPUs:

`torch._int_mm` and `torch._weight_int8pack_mm` read the row-major int8 weight as it is and reach about
half of memory bandwidth at batch 1 on a 2-core Xeon; FBGEMM's dynamic linear reads a weight packed once
for its VNNI kernels and runs 1.6-2.2x faster on the same machine, for decode and prefill alike.
Activations are quantised per call (per tensor, 8 bits, full range), weights per output channel, as in
`Int8Linear`'s dynamic mode; accuracy is the same (about 0.8 % relative error on random data).
Only the packed copy is kept, so memory is one byte per weight.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import torch
from torch import nn

from stepaudio.hardware import require_onednn_packing


class PackedBf16Linear(nn.Module):
    """Bias-free bf16 linear with its weight pre-blocked for oneDNN (CPU only); output dtype follows the input."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        if weight.device.type != "cpu":
            raise ValueError("PackedBf16Linear runs on CPU only")
        require_onednn_packing(torch.bfloat16, "the bf16-packed weight format")
        self.out_features, self.in_features = weight.shape
        # an opaque oneDNN tensor, kept outside the state dict; batch-1 layout hint (decode)
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().to(torch.bfloat16).contiguous(), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), self.packed, None, "none", [], "")
        return out.to(x.dtype)

    @property
    def weight_bytes(self) -> int:
        return 2 * self.out_features * self.in_features

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed=onednn-bf16"


def fbgemm_available() -> bool:
    engines = torch.backends.quantized.supported_engines
    return torch.backends.mkldnn.is_available() and any(e in engines for e in ("fbgemm", "x86"))


@lru_cache(maxsize=1)
def fbgemm_needs_reduce_range() -> bool:
    """True where FBGEMM's int8 products saturate: without VNNI (e.g. AVX2-only CPUs) it sums pairs of
    u8 x s8 products in int16, so full-range activations overflow; 7-bit activations cannot.
    Asked once with the worst case (activations at 255, weights at 127), not from CPU flags."""
    k = 64
    packed = _pack(torch.full((1, k), 127, dtype=torch.int8), torch.ones(1))
    x = torch.ones(1, k)
    x[0, 0] = 0.0  # the dynamic range is [0, 1], so every other activation quantises to 255
    got = float(torch.ops.quantized.linear_dynamic(x, packed, False)[0, 0])
    return abs(got - 127.0 * (k - 1)) > 0.01 * 127.0 * (k - 1)


class PackedInt8Linear(nn.Module):
    """Bias-free linear with int8 weights packed for FBGEMM (CPU only); output dtype follows the input.

    Activations are quantised per call to 8 bits, or to 7 where FBGEMM would saturate (no VNNI)."""

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        if qweight.device.type != "cpu":
            raise ValueError("PackedInt8Linear runs on CPU only")
        self.out_features, self.in_features = qweight.shape
        self.packed = _pack(qweight, scale)
        self.reduce_range = fbgemm_needs_reduce_range()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.float32)
        out = torch.ops.quantized.linear_dynamic(flat, self.packed, self.reduce_range)
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    @property
    def weight_bytes(self) -> int:
        """What one call reads: a byte per weight and a float scale per output (the packed copy is opaque)."""
        return self.out_features * self.in_features + 4 * self.out_features

    def unpacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The int8 weight [N, K] and its fp32 per-row scales, for inspection or repacking."""
        qweight, _ = torch.ops.quantized.linear_unpack(self.packed)
        return qweight.int_repr(), qweight.q_per_channel_scales().to(torch.float32)

    def repack(self, qweight: torch.Tensor, scale: torch.Tensor) -> None:
        self.packed = _pack(qweight, scale)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed=fbgemm"


def _pack(qweight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    n_out = qweight.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensor constructors announce a future deprecation
        quantized = torch._make_per_channel_quantized_tensor(
            qweight.contiguous(), scale.to(torch.float64), torch.zeros(n_out, dtype=torch.long), 0
        )
        return torch.ops.quantized.linear_prepack(quantized, None)
