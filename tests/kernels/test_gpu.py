"""On CUDA the int4 linear computes its dequantised weights' product, and a tiny Step1 in int4 on CUDA gives the
logits it gives on the CPU. Skips without CUDA; `make gpu-check` runs it on the first GPU lent."""

from __future__ import annotations

import pytest
import torch

from stepaudio.kernels.int4 import Int4Linear

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("symmetric", [True, False])
def test_cuda_int4_linear_equals_its_dequantised_product(symmetric: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(384, 512, generator=gen) / 512**0.5
    bias = torch.randn(384, generator=gen)
    layer = Int4Linear.quantize(weight, bias, group_size=128, symmetric=symmetric)
    on_cpu = layer.dequantize().float()
    layer = layer.to("cuda")
    assert torch.equal(layer.dequantize().float().cpu(), on_cpu)  # the CUDA repack keeps every value
    x = torch.randn(5, 512, generator=gen).to(torch.bfloat16)
    got = layer(x.cuda()).float().cpu()
    expected = x.float() @ on_cpu.t() + bias
    assert float((got - expected).norm() / expected.norm()) < 1e-2


def _int4_step1() -> torch.nn.Module:
    """A small random Step1 whose linears are all int4 (widths that fit groups of 128)."""
    from stepaudio.lm.quant import apply_weight_format
    from stepaudio.lm.step1.config import Step1Config
    from stepaudio.lm.step1.model import Step1ForCausalLM

    torch.manual_seed(2)
    config = Step1Config(hidden_size=256, intermediate_size=512, num_attention_heads=4, num_attention_groups=2,
                         num_hidden_layers=2, vocab_size=256, max_seq_len=128)
    model = Step1ForCausalLM(config, dtype=torch.bfloat16)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(1.0 + 0.1 * torch.randn_like(param) if "norm" in name else torch.randn_like(param) / 16)
    apply_weight_format(model.eval(), "int4")
    return model


def test_int4_step1_on_cuda_gives_the_cpu_logits() -> None:
    model = _int4_step1()
    ids = torch.randint(0, 256, (1, 20), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        on_cpu = model.logits(model.hidden(model.embed(ids))).float()
        model = model.to("cuda")
        on_gpu = model.logits(model.hidden(model.embed(ids.cuda()))).float().cpu()
    assert float((on_gpu - on_cpu).norm() / on_cpu.norm()) < 2e-2
