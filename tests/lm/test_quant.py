from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from stepaudio.hardware import onednn_can_pack
from stepaudio.kernels.choices import BF16_QUESTION, ChoiceCache, Measured
from stepaudio.kernels.linear import HalfLinear, Int8Linear
from stepaudio.kernels.packed import PackedBf16Linear, PackedInt8Linear, fbgemm_needs_reduce_range
from stepaudio.lm.quant import (
    apply_weight_format,
    half_linears,
    quantize_int8,
    resolve_weight_format,
)
from stepaudio.lm.step1.model import Step1ForCausalLM

needs_bf16_packing = pytest.mark.skipif(not onednn_can_pack(torch.bfloat16),
                                        reason="this CPU cannot pack bf16 weights for oneDNN (no AVX-512)")

Factory = Callable[..., Step1ForCausalLM]


@pytest.mark.parametrize("mode", ["dynamic", "weight-only", "packed"])
def test_int8_model_stays_close_to_fp32(tiny_model: Factory, mode: str) -> None:
    model = tiny_model(seed=6)
    ids = torch.randint(0, 64, (2, 20), generator=torch.Generator().manual_seed(0))
    ref = model(ids)
    quant = quantize_int8(tiny_model(seed=6), mode)
    assert not any(isinstance(m, torch.nn.Linear) for m in quant.modules())
    out = quant(ids)
    # observed 3-4.5%; 7.6% where FBGEMM needs 7-bit activations (no VNNI)
    limit = 0.12 if mode == "packed" and fbgemm_needs_reduce_range() else 0.1
    assert (out - ref).abs().max().item() < limit * ref.abs().max().item()
    agree = (out.argmax(-1) == ref.argmax(-1)).float().mean().item()
    assert agree > 0.9


def test_half_linears_stay_close_and_keep_the_model_dtype(tiny_model: Factory) -> None:
    ids = torch.randint(0, 64, (2, 10))
    ref = tiny_model(seed=11)(ids)
    model = half_linears(tiny_model(seed=11))
    assert isinstance(model.lm_head, HalfLinear) and model.lm_head.weight.dtype == torch.float16
    out = model(ids)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max().item() < 0.01 * ref.abs().max().item()


def test_auto_resolves_through_the_measured_kernel_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPAUDIO_CACHE", str(tmp_path))
    monkeypatch.delenv("STEPAUDIO_REMEASURE", raising=False)
    for kernel, fmt in (("bf16", "none"), ("fp16", "fp16-weights"), ("bf16-packed", "bf16-packed")):
        ChoiceCache().put(BF16_QUESTION, Measured(kernel, {"decode": {kernel: 1.0}}))
        assert resolve_weight_format("auto", "cpu", torch.bfloat16) == fmt
    assert resolve_weight_format("auto", "cuda", torch.bfloat16) == "none"


def test_weight_formats_resolve_and_apply() -> None:
    assert resolve_weight_format("auto", "cpu", torch.float32) == "none"
    assert resolve_weight_format(None, "cpu", torch.bfloat16) == "none"
    with pytest.raises(ValueError, match="unknown weight format"):
        resolve_weight_format("int4", "cpu", torch.float32)
    formats = [("int8", PackedInt8Linear), ("int8-weight-only", Int8Linear), ("fp16-weights", HalfLinear)]
    if onednn_can_pack(torch.bfloat16):
        formats.append(("bf16-packed", PackedBf16Linear))
    for name, kind in formats:
        model = apply_weight_format(nn.Sequential(nn.Linear(32, 16, bias=False)), name)
        assert isinstance(model[0], kind)


def test_serve_lm_offers_every_weight_format() -> None:
    from stepaudio.cli.serve_lm import WEIGHT_FORMATS as CLI_FORMATS
    from stepaudio.lm.quant import WEIGHT_FORMATS

    assert CLI_FORMATS == WEIGHT_FORMATS


@needs_bf16_packing
def test_packed_bf16_model_matches_the_plain_model(tiny_model: Factory) -> None:
    ids = torch.randint(0, 64, (2, 12))
    plain = tiny_model(seed=3).to(torch.bfloat16)
    ref = plain(ids).float()
    packed = apply_weight_format(tiny_model(seed=3).to(torch.bfloat16), "bf16-packed")
    out = packed(ids).float()
    assert (out - ref).abs().max().item() < 0.02 * ref.abs().max().item()


@pytest.mark.parametrize("name", ["int8", "int8-weight-only", "fp16-weights", "bf16-packed"])
def test_biased_qwen2_linears_change_format_and_keep_their_bias(tiny_qwen2: Callable[..., nn.Module],
                                                               name: str) -> None:
    from stepaudio.lm.quant import BiasAdded

    if name == "bf16-packed" and not onednn_can_pack(torch.bfloat16):
        pytest.skip("this CPU cannot pack bf16 weights for oneDNN (no AVX-512)")
    dtype = torch.bfloat16 if name == "bf16-packed" else torch.float32
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    ref = tiny_qwen2(seed=5, dtype=dtype)(ids).float()
    model = apply_weight_format(tiny_qwen2(seed=5, dtype=dtype), name)
    q_proj = model.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, BiasAdded) and not any(isinstance(m, nn.Linear) for m in model.modules())
    out = model(ids).float()
    limit = 0.12 if name.startswith("int8") else 0.02
    assert (out - ref).abs().max().item() < limit * ref.abs().max().item()
    with torch.no_grad():  # the bias is used: dropping it moves the logits well past that
        q_proj.bias.zero_()
    assert (model(ids).float() - ref).abs().max().item() > 2 * (out - ref).abs().max().item()
