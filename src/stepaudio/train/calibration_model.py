"""A Step1 model as the `transformers.PreTrainedModel` llm-compressor's `oneshot` calibrates.

Step1 is no transformers model (the release ships remote code), so `oneshot` gets a thin wrapper whose
children are our own modules under the release's names (`model.layers.N.self_attn.q_proj`, `lm_head`):
whatever the library quantizes is saved under the keys vLLM's Step1 loader expects. `Step1Backbone` has no
forward (ours lives on `Step1ForCausalLM`), so the wrapper's `model` is a new module holding the same
embedding, layers and norm, with a forward the sequential pipeline can trace layer by layer (each
`Step1Layer` is one subgraph; only one layer need be on the calibration device at a time).

Imports transformers at module level: import it only when quantizing (the `quantize` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from stepaudio.lm.attention import plan_attention
from stepaudio.lm.step1.alibi import alibi_bias
from stepaudio.lm.step1.model import Step1ForCausalLM

# Called as one opaque node by the tracer (it builds masks from shapes, which torch.fx cannot follow).
TRACING_LEAVES = ("step1_calibration_bias",)


class Step1HFConfig(PretrainedConfig):
    """The release config.json as a transformers config (model_type `step1`), for llm-compressor's checks."""

    model_type = "step1"


def register_config() -> None:
    """Let AutoConfig read a Step1 config.json without its remote code (`oneshot` re-reads the source's)."""
    AutoConfig.register(Step1HFConfig.model_type, Step1HFConfig, exist_ok=True)


def step1_calibration_bias(
    slopes: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """The sqrt-ALiBi bias of one uncached forward over (possibly padded) rows."""
    valid = None if attention_mask is None else attention_mask.to(torch.bool)
    plan, _ = plan_attention(input_ids.shape[0], input_ids.shape[1], input_ids.device, None, None, valid, None)
    return alibi_bias(slopes, plan.positions, plan.key_positions, plan.allowed, dtype)


class CalibrationBackbone(nn.Module):
    """Embedding, layers and final norm of a Step1 model (the same module objects), with a plain forward."""

    def __init__(self, step1: Step1ForCausalLM) -> None:
        super().__init__()
        self.embed_tokens = step1.model.embed_tokens
        self.layers = step1.model.layers
        self.norm = step1.model.norm
        self.alibi_slopes: torch.Tensor
        self.register_buffer("alibi_slopes", step1.alibi_slopes.clone(), persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed_tokens(input_ids)
        bias = step1_calibration_bias(self.alibi_slopes, input_ids, attention_mask, x.dtype)
        for i, layer in enumerate(self.layers):
            x = layer(x, bias, None, None, i)
        return self.norm(x)


class Step1ForCalibration(PreTrainedModel):
    """`model` + `lm_head` of a Step1ForCausalLM under the release names; forward returns logits."""

    config_class = Step1HFConfig
    base_model_prefix = "model"
    _no_split_modules = ["Step1Layer"]  # noqa: RUF012 (transformers reads this class attribute)

    def __init__(self, step1: Step1ForCausalLM, source: Path) -> None:
        config = Step1HFConfig(**step1.config.to_hf_dict())
        config.name_or_path = str(source)
        super().__init__(config)
        self.model = CalibrationBackbone(step1)
        self.lm_head = step1.lm_head

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> CausalLMOutputWithPast:
        return CausalLMOutputWithPast(logits=self.lm_head(self.model(input_ids, attention_mask)))

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head
