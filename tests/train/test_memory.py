"""Computed training memory: the parameter count is the release's, and each saving lands where it should."""

from __future__ import annotations

from stepaudio.lm.step1.config import NAMED_SHAPES
from stepaudio.train.memory import estimate, lora_parameters

TTS3B = NAMED_SHAPES["tts-3b"]
SHAPE = {"micro_batch": 4, "seq_len": 1024, "target_tokens": 1600}


def test_parameter_count_matches_the_released_bf16_checkpoint_size() -> None:
    full = estimate(TTS3B, **SHAPE)
    assert 2 * full.params == 7_059_412_992  # REFERENCE.md: model-00001.safetensors, bf16
    assert full.weights + full.gradients + full.optimizer == 16 * full.params


def test_lora_rank_16_on_all_linears_trains_under_one_percent() -> None:
    per_layer = 16 * ((3072 + 3072) * 2 + (3072 + 256) * 2 + (3072 + 8192) * 3)
    assert lora_parameters(TTS3B, 16) == 32 * per_layer
    lora = estimate(TTS3B, **SHAPE, lora_rank=16)
    assert lora.trainable / lora.params < 0.01
    assert lora.total < 0.5 * estimate(TTS3B, **SHAPE).total


def test_checkpointing_and_sharding_cut_what_they_should() -> None:
    plain = estimate(TTS3B, **SHAPE)
    ckpt = estimate(TTS3B, **SHAPE, activation_checkpointing=True)
    sharded = estimate(TTS3B, **SHAPE, activation_checkpointing=True, shards=8)
    assert ckpt.activations < 0.2 * plain.activations and ckpt.optimizer == plain.optimizer
    assert sharded.optimizer == plain.optimizer / 8 and sharded.activations == ckpt.activations
