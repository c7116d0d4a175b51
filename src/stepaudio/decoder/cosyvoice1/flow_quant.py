"""Opt-in int8 flow for CPUs with VNNI: dynamic int8 linears (weights int8, activations per call).

The fp32 path reproduces the reference; this one trades ~2-3% relative error in the estimator's
velocity for 2-3x faster linears, which hold most of the flow's arithmetic; attention scores run
in bf16 (float32 softmax) by default. Convolutions and norms stay fp32. Only for float32 models on CPU.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from stepaudio.decoder.cosyvoice1.estimator import Attention
from stepaudio.decoder.cosyvoice1.flow import MaskedDiffWithXvec


def quantize_flow_int8(
    model: MaskedDiffWithXvec, include_encoder: bool = True, attention_dtype: torch.dtype | None = torch.bfloat16
) -> MaskedDiffWithXvec:
    """A copy of `model` whose estimator (and encoder) linears run as dynamic int8 matmuls.

    `attention_dtype` (default bf16) is used for the estimator's attention scores, its other big cost;
    None keeps them float32.
    """
    if model.input_embedding.weight.dtype != torch.float32 or model.input_embedding.weight.device.type != "cpu":
        raise ValueError("int8 flow needs a float32 model on CPU")
    quantized = copy.deepcopy(model).eval()
    targets: list[nn.Module] = [quantized.decoder]
    if include_encoder:
        targets.append(quantized.encoder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao eager quantization prints a migration notice
        from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

        for module in targets:
            quantize_dynamic(module, {nn.Linear: default_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    for module in quantized.estimator.modules():
        if isinstance(module, Attention):
            module.attention_dtype = attention_dtype
    return quantized
