"""Tiny random Step1 checkpoints in the Hugging Face layout the real TTS-3B and Chat folders use."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from stepaudio.lm.step1.config import Step1Config
from stepaudio.lm.step1.loading import save_step1
from stepaudio.lm.step1.model import Step1ForCausalLM
from stepaudio.text.vocab import STEP1


def tiny_step1_config(vocab_size: int = STEP1.vocab_size, layers: int = 2) -> Step1Config:
    """12 heads (not a power of two, so both ALiBi slope rules run) over 4 KV groups."""
    return Step1Config(
        hidden_size=48,
        intermediate_size=96,
        num_attention_heads=12,
        num_attention_groups=4,
        num_hidden_layers=layers,
        vocab_size=vocab_size,
        max_seq_len=4096,
    )


def random_step1(config: Step1Config, seed: int = 0, dtype: torch.dtype = torch.float32) -> Step1ForCausalLM:
    """Every weight random (norms near 1), so no parameter can hide a bug."""
    generator = torch.Generator().manual_seed(seed)
    model = Step1ForCausalLM(config, dtype=dtype)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator).to(dtype)
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.2 * noise)
            else:
                param.copy_(noise / param.shape[-1] ** 0.5)
    return model.eval()


def write_tiny_step1(
    directory: Path,
    tokenizer_model: Path,
    *,
    seed: int = 0,
    layers: int = 2,
    max_shard_bytes: int | None = None,
) -> Path:
    """A loadable model folder: config.json, safetensors, and the real `tokenizer.model` copied beside."""
    model = random_step1(tiny_step1_config(layers=layers), seed=seed)
    save_step1(model, directory, max_shard_bytes=max_shard_bytes)
    shutil.copyfile(tokenizer_model, directory / "tokenizer.model")
    return directory
