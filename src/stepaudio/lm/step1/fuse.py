"""Opt-in fusion of projections that read the same input: q|k|v and gate|up.

Fewer, larger matrix-vector products stream memory better at batch 1 (the K/V projections alone
are small), and an int8 model then quantises each activation once instead of three times.
The fused model cannot be saved in the checkpoint layout; fuse after loading.
"""

from __future__ import annotations

import torch
from torch import nn

from stepaudio.lm.step1.model import Step1Attention, Step1ForCausalLM, Step1MLP


def _concat(layers: list[nn.Module]) -> nn.Linear:
    weights = []
    for layer in layers:
        if not isinstance(layer, nn.Linear):
            raise TypeError("fuse plain nn.Linear layers (fuse before quantising)")
        weights.append(layer.weight.detach())
    weight = torch.cat(weights, dim=0)
    fused = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
    fused.weight = nn.Parameter(weight, requires_grad=False)
    return fused


def fuse_projections(model: Step1ForCausalLM) -> Step1ForCausalLM:
    """Replace q/k/v and gate/up by one linear each, in place, one layer at a time."""
    for module in model.modules():
        if isinstance(module, Step1Attention) and module.qkv_proj is None:
            module.qkv_proj = _concat([module.q_proj, module.k_proj, module.v_proj])
            del module.q_proj, module.k_proj, module.v_proj
        elif isinstance(module, Step1MLP) and module.gate_up_proj is None:
            module.gate_up_proj = _concat([module.gate_proj, module.up_proj])
            del module.gate_proj, module.up_proj
    return model
