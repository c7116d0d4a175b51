"""Training memory of a Step1 model, computed (not measured) from its config, for planning GPU runs.

What this trainer keeps resident:
- full fine-tuning: fp32 master weights (4 B/param), fp32 gradients (4), AdamW m and v (8); bf16 autocast
  casts each layer's weights on the fly (transient, not counted);
- LoRA: the frozen base in bf16 (2 B/param), adapters with their fp32 weights, gradients and AdamW (16 B each);
- activations per token and layer, saved for backward in bf16 with the fp32 residual stream:
  attention `10h + 4kv` bytes (norm in/out, q/k/v, SDPA out) and MLP `6h + 8i` (norm in/out, gate, up, their
  product); with activation checkpointing only each layer's fp32 input (4h) plus one layer's full set;
- the head only at target positions: logits bf16 + fp32 copy + its gradient, 10 bytes x vocab per target token;
- the shared ALiBi bias [B, heads, T, T] in bf16 (built once per forward, used by every layer).
CUDA context, allocator fragmentation and DDP's gradient buckets (one more fp32 gradient copy for full
fine-tuning) come on top.
"""

from __future__ import annotations

from dataclasses import dataclass

from stepaudio.lm.step1.config import Step1Config
from stepaudio.lm.step1.loading import expected_shapes
from stepaudio.train.lora import STEP1_LINEARS

GIB = 1024**3


@dataclass(frozen=True)
class MemoryEstimate:
    mode: str
    params: int
    trainable: int
    weights: float  # bytes
    gradients: float
    optimizer: float
    activations: float
    logits: float
    bias: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.logits + self.bias

    def row(self) -> dict[str, object]:
        return {"mode": self.mode, "params": self.params / 1e9, "trainable": self.trainable / 1e6,
                **{k: getattr(self, k) / GIB for k in
                   ("weights", "gradients", "optimizer", "activations", "logits", "bias", "total")}}


def lora_parameters(config: Step1Config, rank: int, targets: tuple[str, ...] = STEP1_LINEARS) -> int:
    """Adapter parameters: r x (in + out) for every targeted linear."""
    total = 0
    for key, shape in expected_shapes(config).items():
        name = key.removesuffix(".weight").rpartition(".")[2]
        if len(shape) == 2 and name in targets:
            total += rank * (shape[0] + shape[1])
    return total


def estimate(
    config: Step1Config,
    *,
    micro_batch: int,
    seq_len: int,
    target_tokens: int,
    lora_rank: int | None = None,
    activation_checkpointing: bool = False,
    shards: int = 1,
) -> MemoryEstimate:
    """Bytes per GPU for one micro-batch of `micro_batch` x `seq_len` tokens, `target_tokens` of them answers.

    `shards` > 1 divides weights, gradients and optimizer states as FSDP does (full fine-tuning).
    """
    h, i, kv, layers = config.hidden_size, config.intermediate_size, config.kv_dim, config.num_hidden_layers
    params = sum(_numel(s) for s in expected_shapes(config).values())
    tokens = micro_batch * seq_len
    per_layer = (10 * h + 4 * kv) + (6 * h + 8 * i)
    # With checkpointing: each layer's fp32 input, plus one layer's activations while it is recomputed.
    activations = tokens * (layers * 4 * h + per_layer if activation_checkpointing else layers * per_layer)
    logits = target_tokens * config.vocab_size * 10
    bias = micro_batch * config.num_attention_heads * seq_len * seq_len * 2
    mode = ("full" if lora_rank is None else f"LoRA r={lora_rank}") + (" +ckpt" if activation_checkpointing else "")
    if lora_rank is None:
        if shards > 1:
            mode += f" FSDP/{shards}"
        return MemoryEstimate(mode, params, params, 4 * params / shards, 4 * params / shards, 8 * params / shards,
                              activations, logits, bias)
    adapters = lora_parameters(config, lora_rank)
    return MemoryEstimate(mode, params, adapters, 2 * params + 4 * adapters, 4 * adapters, 8 * adapters,
                          activations, logits, bias)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


COLUMNS = (("mode", "{}"), ("params", "{:.3f}B"), ("trainable", "{:.1f}M"), ("weights", "{:.1f}"),
           ("gradients", "{:.2f}"), ("optimizer", "{:.2f}"), ("activations", "{:.1f}"), ("logits", "{:.2f}"),
           ("bias", "{:.2f}"), ("total", "{:.1f}"))
