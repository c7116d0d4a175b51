"""LoRA: starts at the base model, merge gives the adapter-on logits, adapters and merged checkpoints round-trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stepaudio.errors import CheckpointError
from stepaudio.lm.step1.loading import load_step1, save_step1
from stepaudio.testing.tiny_lm import random_step1, tiny_step1_config
from stepaudio.train.lora import (
    ADAPTER_CONFIG,
    STEP1_LINEARS,
    LoRAConfig,
    apply_lora,
    count_parameters,
    load_adapters,
    lora_modules,
    merge_lora,
    save_adapters,
)

IDS = torch.tensor([[5, 17, 3, 200, 42, 7, 99, 1]])


def _model(seed: int = 1):  # type: ignore[no-untyped-def]
    return random_step1(tiny_step1_config(vocab_size=300), seed=seed)


def _randomise_adapters(model, seed: int = 0) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in lora_modules(model).values():
            module.lora_B.weight.copy_(torch.randn(module.lora_B.weight.shape, generator=g) * 0.3)


def test_wrapping_targets_every_step1_linear_and_starts_at_the_base() -> None:
    model = _model()
    before = model(IDS)
    names = apply_lora(model, LoRAConfig(rank=4))
    assert len(names) == 2 * len(STEP1_LINEARS)
    assert {n.rpartition(".")[2] for n in names} == set(STEP1_LINEARS)
    trainable, total = count_parameters(model)
    assert 0 < trainable < 0.2 * total
    assert all(("lora_" in n) == p.requires_grad for n, p in model.named_parameters())
    torch.testing.assert_close(model(IDS), before)


def test_merge_gives_the_same_logits_as_the_adapters_and_saves_a_standard_checkpoint(tmp_path: Path) -> None:
    model = _model()
    base_logits = model(IDS)
    apply_lora(model, LoRAConfig(rank=4, alpha=8.0, targets=(*STEP1_LINEARS, "lm_head")))
    _randomise_adapters(model)
    with torch.no_grad():
        adapted = model(IDS)
    assert (adapted - base_logits).abs().max() > 0.1  # the adapters do change the model
    merge_lora(model)
    assert not lora_modules(model)
    with torch.no_grad():
        torch.testing.assert_close(model(IDS), adapted, rtol=1e-5, atol=1e-5)
    save_step1(model, tmp_path / "merged")
    reloaded = load_step1(tmp_path / "merged")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(IDS), adapted, rtol=1e-5, atol=1e-5)


def test_adapters_round_trip_in_the_peft_layout(tmp_path: Path) -> None:
    model = _model()
    config = LoRAConfig(rank=2, alpha=4.0, dropout=0.1)
    apply_lora(model, config)
    _randomise_adapters(model, seed=5)
    model.eval()
    save_adapters(model, tmp_path / "adapter", config, base_model="tiny")
    peft = json.loads((tmp_path / "adapter" / ADAPTER_CONFIG).read_text())
    assert peft["peft_type"] == "LORA" and peft["r"] == 2 and peft["lora_alpha"] == 4.0
    fresh = _model()
    assert load_adapters(fresh, tmp_path / "adapter") == config
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(IDS), model(IDS))


def test_bad_configs_and_mismatched_adapters_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="rank"):
        LoRAConfig(rank=0)
    with pytest.raises(CheckpointError, match="unknown LoRA target"):
        LoRAConfig(targets=("wq",))
    model = _model()
    apply_lora(model, LoRAConfig(rank=2))
    save_adapters(model, tmp_path / "a", LoRAConfig(rank=2))
    other = random_step1(tiny_step1_config(vocab_size=300, layers=3), seed=1)
    with pytest.raises(CheckpointError, match="adapter keys do not match"):
        load_adapters(other, tmp_path / "a")
    with pytest.raises(CheckpointError, match=r"no adapter_config\.json"):
        load_adapters(_model(), tmp_path)
