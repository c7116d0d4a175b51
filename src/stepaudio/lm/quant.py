"""CPU weight formats for the LM linears, chosen by name (`WEIGHT_FORMATS`, `resolve_weight_format`).

The layers themselves live in `stepaudio.kernels` (shared with the tokenizer); this module picks and applies them.
int8 (per output channel, symmetric), three kernels, all reading one byte per weight:
* "packed" (the `int8` format on x86): FBGEMM-packed weights, `stepaudio.kernels.packed`; the fastest.
* "dynamic": activations are quantised per token to int8 on the fly and multiplied with
  `torch._int_mm` (VNNI); the fastest path on CPUs without AMX (it reaches memory bandwidth at
  batch 1). Adds activation rounding error (per-token absmax / 127).
* "weight-only": activations stay in floating point (`torch._weight_int8pack_mm`); more exact,
  slower on current CPUs.
Off the CPU the weights are dequantised per call (correct, memory-saving, not faster).

int4 (`Int4Linear`, groups of 128 along the input, symmetric round-to-nearest): half a byte per weight. The
head keeps 8 bits where int8 is fast (the CPU: what the `int8` format gives it) and the model dtype elsewhere,
since 4-bit logits cost the most accuracy for the fewest bytes; the embedding stays as loaded, as with int8.
A layer whose in_features no group size divides stays as loaded. On CPU each layer runs on the backend measured
fastest here (`kernels.int4.cpu_int4_kernel`, cached): our own AVX2 kernel (`kernels.int4_avx2`, compiled on
first use), onnxruntime's MatMulNBits, or torch's kernel; the first two round activations to int8 per group
(~0.5 % product error). torch's kernel is compute-bound on AVX2 (2-core EPYC, TTS-3B: ~21-26 % of the bandwidth
bound); on that machine, quiet, `bench lm --shape tts-3b --layers 8` decoded at 70-71 % of the bound with the
AVX2 kernel and 50-68 % with MatMulNBits. Without a C compiler or onnxruntime the next backend serves. On CUDA
torch's tinygemm kernel reads the 4x smaller weights at batch 1.

16-bit: `bf16-packed` (oneDNN pre-blocked bf16, the choice with AMX) or `half_linears` (fp16 weights,
exact for bf16 values in fp16's normal range, behind a cast of the activations) where this CPU's fp16
matrix-vector kernel beats its bf16 one. Only the products change; norms and residuals keep the model dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from stepaudio.kernels.int4 import Int4Linear, fits
from stepaudio.kernels.linear import HalfLinear, Int8Linear, quantize_weight
from stepaudio.kernels.packed import PackedBf16Linear, PackedInt8Linear, fbgemm_available

QUANT_MODES = ("dynamic", "weight-only", "packed")  # packed: FBGEMM (stepaudio.kernels.packed), CPU
# What users pick (engine `quant=`, `serve-lm --quant`): the weight format of every linear layer.
WEIGHT_FORMATS = ("none", "int8", "int8-weight-only", "int4", "fp16-weights", "bf16-packed", "auto")


def resolve_weight_format(name: str | None, device: torch.device | str, dtype: torch.dtype) -> str:
    """`auto`: a bf16 checkpoint on CPU gets the format this CPU runs fastest, measured once and cached
    (`stepaudio.kernels.choices.bf16_product_kernel`): plain bf16 (`none`), fp16 weights or oneDNN pre-blocked
    bf16, all exact, or `int8` where a request costs at least a third less with it (AVX2-only CPUs, where bf16
    is emulated). Weights are stored once, so the measure is a whole request (a 128-token prefill and 128
    decode steps): decode dominates unless a kernel's prefill is far slower, as emulated bf16 is on AVX2-only
    CPUs. Everything else stays as loaded."""
    name = name or "none"
    if name not in WEIGHT_FORMATS:
        raise ValueError(f"unknown weight format {name!r}; choose one of {', '.join(WEIGHT_FORMATS)}")
    if name != "auto":
        return name
    if torch.device(device).type != "cpu" or dtype != torch.bfloat16:
        return "none"
    from stepaudio.kernels.choices import bf16_product_kernel

    kernel = bf16_product_kernel().choice
    return {"fp16": "fp16-weights", "bf16-packed": "bf16-packed", "int8": "int8"}.get(kernel, "none")


def apply_weight_format(model: nn.Module, name: str) -> nn.Module:
    """Convert every linear layer of a loaded model to the format `name` (after resolve_weight_format)."""
    if name == "int8":
        return quantize_int8(model, _int8_mode(model))
    if name == "int4":
        return quantize_int4(model)
    if name == "int8-weight-only":
        return quantize_int8(model, "weight-only")
    if name == "fp16-weights":
        return half_linears(model)
    if name == "bf16-packed":
        return _replace_linears(model, lambda linear: PackedBf16Linear(linear.weight))
    if name != "none":
        raise ValueError(f"unknown weight format {name!r}; resolve 'auto' first")
    return model


def quantize_int8(model: nn.Module, mode: str = "dynamic", *, include_head: bool = True) -> nn.Module:
    """Replace every nn.Linear of `model` in place (one at a time, so peak memory stays low).

    `packed` builds FBGEMM-packed layers (the fastest on x86 CPUs); the others build `Int8Linear`."""
    if mode not in QUANT_MODES:
        raise ValueError(f"unknown int8 mode {mode!r}; choose one of {QUANT_MODES}")

    skip = None if include_head else (lambda name: name.endswith("lm_head"))
    return _replace_linears(model, lambda linear: _int8_layer(linear, mode), skip=skip)


def _int8_mode(model: nn.Module) -> str:
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    return "packed" if on_cpu and fbgemm_available() else "dynamic"


def quantize_int4(model: nn.Module, group_size: int = 128, *, symmetric: bool = True) -> nn.Module:
    """Replace every nn.Linear but the head by an Int4Linear (bias kept inside), in place, one at a time.

    Each layer takes `group_size`, or the largest smaller group size that divides its in_features; a layer
    none fits stays as it is. The head (`lm_head`) gets int8 on CPU, as the int8 format gives it, and stays
    in the model dtype on other devices (int8 there dequantises per call: slower than the plain head)."""
    def is_head(name: str) -> bool:
        return name.endswith("lm_head")

    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear) and not is_head(name)]
    for name, linear in targets:
        size = fits(linear.out_features, linear.in_features, group_size)
        if size is None:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        bias = None if linear.bias is None else linear.bias.detach()
        setattr(parent, child, Int4Linear.quantize(linear.weight.detach(), bias, group_size=size,
                                                   symmetric=symmetric))
    if all(p.device.type == "cpu" for p in model.parameters()):
        mode = _int8_mode(model)
        _replace_linears(model, lambda linear: _int8_layer(linear, mode), skip=lambda name: not is_head(name))
    return model


def _int8_layer(linear: nn.Linear, mode: str) -> nn.Module:
    if mode == "packed":
        return PackedInt8Linear(*quantize_weight(linear.weight.detach()))
    return Int8Linear.from_linear(linear, mode)


def half_linears(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear of `model` by a HalfLinear, in place."""
    return _replace_linears(model, lambda linear: HalfLinear(linear.weight.detach()))


def _replace_linears(
    model: nn.Module, make: Callable[[nn.Linear], nn.Module], skip: Callable[[str], bool] | None = None
) -> nn.Module:
    """Swap every nn.Linear (but those `skip` names) for `make(linear)`, one at a time, so peak memory stays one
    layer above the model's. A biased linear (Qwen2's q/k/v) gets `make` of its weight alone, its bias added after."""
    targets = [(name, m) for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and not (skip and skip(name))]
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if linear.bias is None:
            setattr(parent, child, make(linear))
            continue
        bare = nn.Linear(linear.in_features, linear.out_features, bias=False, device="meta")
        bare.weight = linear.weight
        setattr(parent, child, BiasAdded(make(bare), linear.bias.detach()))
    return model


class BiasAdded(nn.Module):
    """A bias-free linear of any weight format, then the float bias (kept in the model dtype; one add)."""

    def __init__(self, inner: nn.Module, bias: torch.Tensor) -> None:
        super().__init__()
        self.inner = inner
        self.bias: torch.Tensor
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out + self.bias.to(out.dtype)
