"""Opt-in reduced-precision weights for the Paraformer encoder on CPU.

A streaming step multiplies only 5 + 4 frames through 158M parameters, so its time is reading
the weights (632 MB in fp32). Storing the matmul weights as bf16 halves those bytes and int8
(per-output-channel scales) quarters them. Only the matmuls change: layer norms, softmax, the
FSMN memory and the residual stream stay in float32, and the codes may differ from the fp32
path where a frame is near a tie between two centroids. The plain float32 path stays the
default; this is a wrapper applied to a loaded encoder.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.hardware import require_onednn_packing
from stepaudio.kernels.choices import Measured
from stepaudio.kernels.linear import quantize_weight
from stepaudio.kernels.packed import PackedInt8Linear
from stepaudio.tokenizer.paraformer.encoder import ParaformerEncoder

__all__ = ["WEIGHT_MODES", "Bf16Linear", "FbgemmInt8Linear", "Int8Linear", "PackedLinear", "preferred_weight_mode",
           "reduce_encoder_weights"]

# "-packed": the same precision with weights pre-reordered once for oneDNN (CPU only); plain
# F.linear re-packs the weight on every call, which at 9 rows costs as much as the product.
# "int8-packed": FBGEMM dynamic int8 (per-channel weights, activations quantised per call), a quarter
# of fp32's bytes and fast small-batch kernels on any x86 CPU; approximate, like the other reduced modes.
# "fp32-compiled": float32 weights frozen into one inductor graph of the steady streaming step
# (stepaudio.tokenizer.paraformer.compiled); compiling takes minutes, see LinguisticTokenizer.warm_up.
WEIGHT_MODES = ("fp32", "fp32-packed", "fp32-compiled", "bf16", "bf16-packed", "int8", "int8-packed")


WEIGHT_MODE_QUESTION = "vq02-weight-mode/1"


def preferred_weight_mode(device: str | torch.device, *, remeasure: bool | None = None) -> str:
    """The default: float32 precision (the codes of the reference), with the weights oneDNN-packed on a CPU
    where that is measured faster here (`stepaudio.kernels.choices`), else as loaded. The reduced modes
    change codes near centroid ties and `fp32-compiled` compiles for minutes, so they stay opt-in."""
    if torch.device(device).type != "cpu" or not torch.backends.mkldnn.is_available():
        return "fp32"
    from stepaudio.kernels.choices import choose

    return choose(WEIGHT_MODE_QUESTION, measure_weight_modes, remeasure=remeasure).choice


def measure_weight_modes() -> Measured:
    """`fp32` against `fp32-packed` on the encoder's feed-forward shape (512 -> 2048): a streaming step's 9
    rows through twelve layers' weights (48 MB, more than an L3) and a 270-row utterance through one.
    Weights are set once for both uses, so a request is one utterance against the 30 steps of the same audio."""
    from stepaudio.kernels.choices import cheapest_request, time_calls

    layers = []
    for _ in range(12):
        linear = nn.Linear(512, 2048, bias=True)
        with torch.no_grad():  # constant weights: a dense product's speed does not depend on the values
            linear.weight.fill_(0.01)
            linear.bias.zero_()
        layers.append(linear)
    modes: dict[str, list[nn.Module]] = {"fp32": list(layers), "fp32-packed": [PackedLinear(lin, torch.float32)
                                                                               for lin in layers]}
    step, utterance = torch.full((9, 512), 0.5), torch.full((270, 512), 0.5)

    def streaming(mods: list[nn.Module]) -> Callable[[], object]:
        return lambda: [m(step) for m in mods]

    def offline(mod: nn.Module) -> Callable[[], object]:
        return lambda: mod(utterance)

    with torch.inference_mode():
        steps = time_calls({name: streaming(mods) for name, mods in modes.items()}, repeats=9, budget_s=0.3)
        whole = time_calls({name: offline(mods[0]) for name, mods in modes.items()}, repeats=9, budget_s=0.3)
    steps = {name: t / len(layers) for name, t in steps.items()}
    return Measured(cheapest_request(whole, steps, 30), {"prefill": whole, "decode": steps})


class Bf16Linear(nn.Module):
    """``y = x W^T + b`` with W stored in bf16; bf16 inputs, float32 accumulation, float32 output."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().to(torch.bfloat16), requires_grad=False)
        bias = linear.bias.detach() if linear.bias is not None else torch.zeros(linear.out_features)
        self.bias = nn.Parameter(bias.to(torch.bfloat16), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(torch.bfloat16), self.weight, self.bias).to(x.dtype)


class Int8Linear(nn.Module):
    """Weight-only int8 with one scale per output channel (symmetric, round to nearest).

    Uses torch's int8-weight CPU kernel with bf16 activations; that kernel needs the input width
    to be a multiple of 16 (it crashes otherwise), so other widths multiply dequantised weights.
    """

    weight_int8: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        quant = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight_int8", quant)
        self.register_buffer("scale", scale.to(torch.bfloat16))
        bias = linear.bias.detach() if linear.bias is not None else torch.zeros(linear.out_features)
        self.register_buffer("bias", bias.float())
        self.use_kernel = linear.in_features % 16 == 0 and hasattr(torch, "_weight_int8pack_mm")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1]).to(torch.bfloat16)
        if self.use_kernel and flat.device.type == "cpu":
            out = torch._weight_int8pack_mm(flat, self.weight_int8, self.scale)
        else:
            out = flat @ (self.weight_int8.to(torch.bfloat16) * self.scale[:, None]).T
        return (out.to(x.dtype) + self.bias).reshape(*shape[:-1], -1)


class PackedLinear(nn.Module):
    """``F.linear`` with the weight reordered once into oneDNN's blocked layout (fp32 or bf16)."""

    def __init__(self, linear: nn.Linear, dtype: torch.dtype, rows_hint: int = 9) -> None:
        super().__init__()
        if not torch.backends.mkldnn.is_available() or linear.weight.device.type != "cpu":
            raise ValueError("packed weight modes need a CPU torch build with oneDNN (mkldnn)")
        require_onednn_packing(dtype, f"weight mode {str(dtype).removeprefix('torch.')}-packed")
        self.dtype = dtype
        weight = linear.weight.detach().to(dtype)
        bias = linear.bias.detach() if linear.bias is not None else torch.zeros(linear.out_features)
        # an opaque oneDNN tensor: kept as a plain attribute, outside the state dict
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows_hint)
        self.bias = nn.Parameter(bias.to(dtype), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.ops.mkldnn._linear_pointwise(x.to(self.dtype), self.packed, self.bias, "none", [], "")
        return out.to(x.dtype)


class FbgemmInt8Linear(nn.Module):
    """``F.linear`` through FBGEMM's dynamic int8 kernel, float32 bias added after."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.inner = PackedInt8Linear(*quantize_weight(linear.weight.detach()))
        bias = linear.bias.detach() if linear.bias is not None else torch.zeros(linear.out_features)
        self.bias = nn.Parameter(bias.float(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.float()) + self.bias


def reduce_encoder_weights(encoder: ParaformerEncoder, mode: str) -> ParaformerEncoder:
    """Replace every matmul weight of ``encoder`` in place (``fp32`` leaves it unchanged); returns it."""
    if mode not in WEIGHT_MODES:
        raise ValueError(f"weight mode must be one of {WEIGHT_MODES}, got {mode!r}")
    if mode == "fp32":
        return encoder
    if mode == "fp32-compiled":
        import copy

        from stepaudio.tokenizer.paraformer.compiled import CompiledSteadyStep

        # the graph freezes its own copy of the plain weights (discarded once compiled); a step it does not
        # serve (a shorter last one) runs the encoder's layers with oneDNN-packed weights
        encoder.steady_step = CompiledSteadyStep(copy.deepcopy(encoder.layers))
        mode = "fp32-packed"
    wrappers = {
        "bf16": Bf16Linear,
        "int8": Int8Linear,
        "fp32-packed": lambda lin: PackedLinear(lin, torch.float32),
        "bf16-packed": lambda lin: PackedLinear(lin, torch.bfloat16),
        "int8-packed": FbgemmInt8Linear,
    }
    wrapper = wrappers[mode]
    for layer in encoder.layers:
        attn, ff = layer.self_attn, layer.feed_forward
        attn.linear_q_k_v = wrapper(attn.linear_q_k_v)  # type: ignore[assignment]
        attn.linear_out = wrapper(attn.linear_out)  # type: ignore[assignment]
        ff.w_1 = wrapper(ff.w_1)  # type: ignore[assignment]
        ff.w_2 = wrapper(ff.w_2)  # type: ignore[assignment]
    return encoder
