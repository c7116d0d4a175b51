"""On CUDA the int4 linear computes its dequantised weights' product, and a tiny Step1 in int4 on CUDA gives the
logits it gives on the CPU. Skips without CUDA; `make gpu-check` runs it on the first GPU lent."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stepaudio.kernels.int4 import Int4Linear

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("symmetric", [True, False])
def test_cuda_int4_linear_equals_its_dequantised_product(symmetric: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(384, 512, generator=gen) / 512**0.5
    bias = torch.randn(384, generator=gen)
    layer = Int4Linear.quantize(weight, bias, group_size=128, symmetric=symmetric)
    on_cpu = layer.dequantize().float()
    layer = layer.to("cuda")
    assert layer.packed.device.type == "cuda" and layer.packed.dtype == torch.int32  # the tensor-core layout
    assert torch.equal(layer.dequantize().float().cpu(), on_cpu)  # the CUDA repack keeps every value
    x = torch.randn(5, 512, generator=gen).to(torch.bfloat16)
    got = layer(x.cuda()).float().cpu()
    expected = x.float() @ on_cpu.t() + bias
    assert _rel(got, expected) < 1e-2
    back = layer.to("cpu")  # and back: the CPU packing again, the same values
    assert back.packed.dtype == torch.uint8 and torch.equal(back.dequantize(), on_cpu)


@pytest.mark.parametrize("group_size", [32, 64, 256])
def test_cuda_int4_from_groups_built_on_the_gpu(group_size: int) -> None:
    gen = torch.Generator().manual_seed(1)
    q = torch.randint(0, 16, (64, 512), generator=gen, dtype=torch.int8)
    zeros = torch.randint(0, 16, (64, 512 // group_size), generator=gen, dtype=torch.int8)
    scales = torch.rand(64, 512 // group_size, generator=gen) * 0.02 + 0.001
    layer = Int4Linear.from_groups(q.cuda(), scales.cuda(), zeros.cuda(), group_size)
    weight = layer.dequantize().cpu()
    x = torch.randn(3, 512, generator=gen).to(torch.bfloat16)
    assert _rel(layer(x.cuda()).float().cpu(), x.float() @ weight.t()) < 1e-2
    back_q, _, back_zeros = layer.groups()
    assert back_zeros is not None
    assert torch.equal(back_q.cpu(), q) and torch.equal(back_zeros.cpu(), zeros)


def _step1() -> nn.Module:
    """A small random bf16 Step1 whose widths fit groups of 128."""
    from stepaudio.lm.step1.config import Step1Config
    from stepaudio.lm.step1.model import Step1ForCausalLM

    torch.manual_seed(2)
    config = Step1Config(hidden_size=256, intermediate_size=512, num_attention_heads=4, num_attention_groups=2,
                         num_hidden_layers=2, vocab_size=256, max_seq_len=128)
    model = Step1ForCausalLM(config, dtype=torch.bfloat16)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(1.0 + 0.1 * torch.randn_like(param) if "norm" in name else torch.randn_like(param) / 16)
    return model.eval()


def _logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.logits(model.hidden(model.embed(ids))).float().cpu()


def test_int4_step1_moved_to_cuda_gives_the_cpu_logits() -> None:
    """The same int4 layers (quantised on the CPU, the head left in bf16) moved to the GPU: repacked for its
    kernel, the logits stay those of the CPU kernel."""
    model = _step1()
    for name, linear in [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]:
        if not name.endswith("lm_head"):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, Int4Linear.quantize(linear.weight))
    ids = torch.randint(0, 256, (1, 20), generator=torch.Generator().manual_seed(3))
    on_cpu = _logits(model, ids)
    on_gpu = _logits(model.to("cuda"), ids.cuda())
    assert _rel(on_gpu, on_cpu) < 2e-2


def test_int4_weight_format_on_cuda_is_near_the_cpu_one() -> None:
    """What NativeLM does with device=cuda: load there, then the int4 format (quantised on the GPU, the head
    kept in bf16 there). Against the CPU int4 model: same nibbles, the CPU's head in int8 (~1-2 % apart)."""
    from stepaudio.lm.quant import apply_weight_format

    ids = torch.randint(0, 256, (1, 20), generator=torch.Generator().manual_seed(4))
    on_cpu = _logits(apply_weight_format(_step1(), "int4"), ids)
    gpu_model = apply_weight_format(_step1().to("cuda"), "int4")
    assert isinstance(gpu_model.model.layers[0].mlp.down_proj, Int4Linear)
    assert isinstance(gpu_model.lm_head, nn.Linear) and gpu_model.lm_head.weight.dtype == torch.bfloat16
    assert _rel(_logits(gpu_model, ids.cuda()), on_cpu) < 5e-2
