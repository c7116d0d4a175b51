"""CPU weight formats for the Step1 linears, chosen by name (`WEIGHT_FORMATS`, `resolve_weight_format`).

int8 (per output channel, symmetric), three kernels, all reading one byte per weight:
* "packed" (the `int8` format on x86): FBGEMM-packed weights, `stepaudio.lm.quant_packed`; the fastest.
* "dynamic": activations are quantised per token to int8 on the fly and multiplied with
  `torch._int_mm` (VNNI); the fastest path on CPUs without AMX (it reaches memory bandwidth at
  batch 1). Adds activation rounding error (per-token absmax / 127).
* "weight-only": activations stay in floating point (`torch._weight_int8pack_mm`); more exact,
  slower on current CPUs.
Off the CPU the weights are dequantised per call (correct, memory-saving, not faster).

16-bit: `bf16-packed` (oneDNN pre-blocked bf16, the choice with AMX) or `half_linears` (fp16 weights,
exact for bf16 values in fp16's normal range, behind a cast of the activations) where this CPU's fp16
matrix-vector kernel beats its bf16 one. Only the products change; norms and residuals keep the model dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch
from torch import nn

from stepaudio.hardware import cpu_has_amx, onednn_can_pack
from stepaudio.lm.quant_packed import PackedBf16Linear, PackedInt8Linear, fbgemm_available

QUANT_MODES = ("dynamic", "weight-only", "packed")  # packed: FBGEMM (stepaudio.lm.quant_packed), CPU
# What users pick (engine `quant=`, `serve-lm --quant`): the weight format of every linear layer.
WEIGHT_FORMATS = ("none", "int8", "int8-weight-only", "fp16-weights", "bf16-packed", "auto")


def resolve_weight_format(name: str | None, device: torch.device | str, dtype: torch.dtype) -> str:
    """`auto`: a bf16 checkpoint on CPU gets oneDNN-packed bf16 weights where AMX makes bf16 fast, else fp16
    weights (bf16-exact) where this CPU's fp16 matrix-vector kernel beats its bf16 one (measured once: it
    depends on the CPU); everything else stays as loaded."""
    name = name or "none"
    if name not in WEIGHT_FORMATS:
        raise ValueError(f"unknown weight format {name!r}; choose one of {', '.join(WEIGHT_FORMATS)}")
    if name != "auto":
        return name
    if torch.device(device).type != "cpu" or dtype != torch.bfloat16:
        return "none"
    if cpu_has_amx() and onednn_can_pack(torch.bfloat16):
        return "bf16-packed"
    return "fp16-weights" if fp16_matvec_is_faster() else "none"


@lru_cache(maxsize=1)
def fp16_matvec_is_faster() -> bool:
    """Time batch-1 products with a 32 MB weight in bf16 and in fp16, interleaved, best of several."""
    import time

    n_out, n_in = 4096, 4096
    x16, xb = torch.randn(1, n_in, dtype=torch.float16), torch.randn(1, n_in, dtype=torch.bfloat16)
    w16 = torch.empty(n_out, n_in, dtype=torch.float16).uniform_(-0.02, 0.02)
    wb = w16.to(torch.bfloat16)
    best = {"fp16": float("inf"), "bf16": float("inf")}
    for _ in range(5):
        for key, x, w in (("fp16", x16, w16), ("bf16", xb, wb)):
            start = time.perf_counter()
            for _ in range(4):
                torch.nn.functional.linear(x, w)
            best[key] = min(best[key], time.perf_counter() - start)
    return best["fp16"] < 0.9 * best["bf16"]


def apply_weight_format(model: nn.Module, name: str) -> nn.Module:
    """Convert every linear layer of a loaded model to the format `name` (after resolve_weight_format)."""
    if name == "int8":
        on_cpu = all(p.device.type == "cpu" for p in model.parameters())
        return quantize_int8(model, "packed" if on_cpu and fbgemm_available() else "dynamic")
    if name == "int8-weight-only":
        return quantize_int8(model, "weight-only")
    if name == "fp16-weights":
        return half_linears(model)
    if name == "bf16-packed":
        return _replace_linears(model, lambda linear: PackedBf16Linear(linear.weight))
    if name != "none":
        raise ValueError(f"unknown weight format {name!r}; resolve 'auto' first")
    return model


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 [N, K] and fp32 scales [N] with weight ~= q * scale[:, None]."""
    w = weight.to(torch.float32)
    scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


class Int8Linear(nn.Module):
    """Bias-free linear layer with int8 weights; output dtype follows the input."""

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor, mode: str = "dynamic") -> None:
        super().__init__()
        if mode not in ("dynamic", "weight-only"):
            raise ValueError(f"unknown Int8Linear mode {mode!r}; choose dynamic or weight-only")
        self.mode = mode
        self.out_features, self.in_features = qweight.shape
        self.qweight: torch.Tensor
        self.scale: torch.Tensor
        self.register_buffer("qweight", qweight.contiguous())
        self.register_buffer("scale", scale.to(torch.float32))

    @classmethod
    def from_linear(cls, linear: nn.Linear, mode: str = "dynamic") -> Int8Linear:
        if linear.bias is not None:
            raise ValueError("Int8Linear supports bias-free layers only")
        q, scale = quantize_weight(linear.weight.detach())
        return cls(q, scale, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if flat.device.type != "cpu":  # the int8 kernels here target CPUs; elsewhere dequantise
            weight = self.qweight.to(flat.dtype) * self.scale.to(flat.dtype)[:, None]
            out = flat @ weight.t()
        elif self.mode == "weight-only":
            out = torch._weight_int8pack_mm(flat, self.qweight, self.scale.to(flat.dtype))
        else:
            x32 = flat.to(torch.float32)
            x_scale = (x32.abs().amax(dim=1, keepdim=True) / 127.0).clamp(min=1e-12)
            xq = torch.round(x32 / x_scale).clamp(-127, 127).to(torch.int8)
            acc = torch._int_mm(xq, self.qweight.t())
            out = (acc.to(torch.float32) * x_scale * self.scale).to(x.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)


def quantize_int8(model: nn.Module, mode: str = "dynamic", *, include_head: bool = True) -> nn.Module:
    """Replace every nn.Linear of `model` in place (one at a time, so peak memory stays low).

    `packed` builds FBGEMM-packed layers (the fastest on x86 CPUs); the others build `Int8Linear`."""
    if mode not in QUANT_MODES:
        raise ValueError(f"unknown int8 mode {mode!r}; choose one of {QUANT_MODES}")

    def make(linear: nn.Linear) -> nn.Module:
        if mode == "packed":
            return PackedInt8Linear(*quantize_weight(linear.weight.detach()))
        return Int8Linear.from_linear(linear, mode)

    return _replace_linears(model, make, skip=None if include_head else (lambda name: name.endswith("lm_head")))


class HalfLinear(nn.Module):
    """Bias-free linear layer with fp16 weights; inputs are cast to fp16 and results back."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight: torch.Tensor
        self.register_buffer("weight", weight.to(torch.float16).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.numel() // x.shape[-1] > 8:
            # Many rows (prefill): the CPU fp16 matrix-matrix kernel is slow. With AMX, bf16 is the fastest
            # (and exact: the weights are bf16 values); without, fp32.
            wide = torch.bfloat16 if cpu_has_amx() else torch.float32
            return torch.nn.functional.linear(x.to(wide), self.weight.to(wide)).to(x.dtype)
        return torch.nn.functional.linear(x.to(torch.float16), self.weight).to(x.dtype)


def half_linears(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear of `model` by a HalfLinear, in place."""
    return _replace_linears(model, lambda linear: HalfLinear(linear.weight.detach()))


def _replace_linears(
    model: nn.Module, make: Callable[[nn.Linear], nn.Module], skip: Callable[[str], bool] | None = None
) -> nn.Module:
    """Swap every bias-free nn.Linear (but those `skip` names) for `make(linear)`, one at a time, so peak
    memory stays one layer above the model's."""
    targets = [(name, m) for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and not (skip and skip(name))]
    for name, linear in targets:
        if linear.bias is not None:
            raise ValueError(f"{name}: only bias-free linears can change weight format")
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make(linear))
    return model
