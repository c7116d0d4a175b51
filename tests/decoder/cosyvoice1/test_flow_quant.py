"""Opt-in int8 flow: linears swapped for dynamic int8 ones, output close to fp32, fp32 model untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from stepaudio.decoder.cosyvoice1.flow import FlowRequest, MaskedDiffWithXvec, generate_mel
from stepaudio.decoder.cosyvoice1.flow_config import (
    CFMConfig,
    ConformerConfig,
    EstimatorConfig,
    FlowConfig,
    LengthRegulatorConfig,
)
from stepaudio.decoder.cosyvoice1.flow_quant import quantize_flow_int8

TINY = FlowConfig(
    input_size=32, vocab_size=40,
    encoder=ConformerConfig(input_size=32, output_size=32, attention_heads=2, linear_units=48, num_blocks=1),
    length_regulator=LengthRegulatorConfig(sampling_ratios=(1,)),
    cfm=CFMConfig(n_timesteps=3),
    estimator=EstimatorConfig(channels=(32, 32), attention_head_dim=16, n_blocks=1, num_mid_blocks=1, num_heads=2),
)


def test_int8_flow_is_close_to_fp32_and_leaves_the_original() -> None:
    torch.manual_seed(0)
    model = MaskedDiffWithXvec(TINY).eval()
    q8 = quantize_flow_int8(model)
    plain = [m for m in q8.estimator.modules() if type(m) is nn.Linear]
    assert not plain  # every estimator linear is quantized
    assert type(model.estimator.mid_blocks[0].blocks[0].attn1.to_qkv) is nn.Linear
    assert q8.estimator.mid_blocks[0].blocks[0].attn1.attention_dtype == torch.bfloat16
    assert model.estimator.mid_blocks[0].blocks[0].attn1.attention_dtype is None
    g = torch.Generator().manual_seed(1)
    req = FlowRequest(torch.randint(0, 40, (12,), generator=g), torch.randint(0, 40, (5,), generator=g),
                      torch.randn(9, 80, generator=g), torch.randn(192, generator=g))
    noise = torch.randn(1, 80, 9 + TINY.mel_len(12), generator=g)
    ref = generate_mel(model, [req], noise=noise)[0]
    low = generate_mel(q8, [req], noise=noise)[0]
    err = (low - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()
    assert 0 < err < 0.05


def test_int8_needs_a_float32_cpu_model() -> None:
    with pytest.raises(ValueError, match="float32"):
        quantize_flow_int8(MaskedDiffWithXvec(TINY).to(torch.bfloat16))


@pytest.mark.conformance
def test_conformance_int8_error_within_the_reference_bf16_band(conformance_dir: Path) -> None:
    from safetensors.torch import load_file

    from stepaudio.decoder.cosyvoice1.flow_config import flow_config_from_hparams
    from stepaudio.decoder.cosyvoice1.flow_loading import load_flow

    d = conformance_dir / "flow"
    model = load_flow(d / "flow.safetensors", flow_config_from_hparams(d / "hparams.json"))
    v = load_file(str(d / "vectors.safetensors"))
    req = FlowRequest(v["inputs.token"][0], v["inputs.prompt_token"][0], v["inputs.prompt_feat"][0],
                      v["inputs.embedding"][0])
    mel = generate_mel(quantize_flow_int8(model), [req], noise=v["inputs.noise"])[0][None]
    band = (v["outputs.mel_bf16_reference_path"] - v["outputs.mel"]).abs()
    err = (mel - v["outputs.mel"]).abs()
    assert 0 < err.mean() < band.mean() and err.max() < band.max()
