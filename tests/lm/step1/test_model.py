from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepaudio.lm.protocol import new_cache
from stepaudio.lm.step1.loading import load_step1
from stepaudio.lm.step1.model import Step1ForCausalLM

TOL = {"atol": 1e-4, "rtol": 1e-4}
Factory = Callable[..., Step1ForCausalLM]


def test_static_step_reading_all_slots_matches_eager(tiny_model: Factory) -> None:
    """The static-shape path used by captured graphs (attend over every slot, flags hide the rest)."""
    model = tiny_model(seed=2)
    ids = torch.randint(0, 64, (1, 6))
    eager_cache = new_cache(model, 1, 40)
    static_cache = new_cache(model, 1, 40)
    model(ids[:, :5], cache=eager_cache)
    model(ids[:, :5], cache=static_cache)
    slots = torch.tensor([static_cache.length])
    static_cache.length += 1
    out = model(ids[:, 5:], torch.tensor([[5]]), static_cache, step=static_cache.static_step(slots))
    assert torch.allclose(out, model(ids[:, 5:], cache=eager_cache), atol=1e-6)


def test_cache_truncate_rolls_back(tiny_model: Factory) -> None:
    model = tiny_model(seed=3)
    cache = new_cache(model, 1, 16)
    model(torch.tensor([[1, 2, 3]]), cache=cache)
    first = model(torch.tensor([[4]]), cache=cache)
    model(torch.tensor([[9, 9]]), cache=cache)
    cache.truncate(3)
    assert torch.allclose(model(torch.tensor([[4]]), cache=cache), first)
    with pytest.raises(ValueError, match="full"):
        model(torch.zeros(1, 20, dtype=torch.long), cache=cache)


def _vectors(conformance_dir: Path) -> tuple[dict[str, torch.Tensor], dict, Step1ForCausalLM]:
    step1 = conformance_dir / "step1"
    meta = json.loads((step1 / "meta.json").read_text())
    return load_file(step1 / "vectors.safetensors"), meta, load_step1(step1)


@pytest.mark.conformance
def test_conformance_full_prefill_incremental(conformance_dir: Path) -> None:
    vec, meta, model = _vectors(conformance_dir)
    for seq in meta["sequences"]:
        i, k = seq["index"], seq["prefill_len"]
        ids = vec[f"seq{i}.input_ids"][None]
        torch.testing.assert_close(model(ids)[0], vec[f"seq{i}.logits_full"], **TOL)
        cache = new_cache(model, 1, ids.shape[1])
        prefill = model(ids[:, :k], cache=cache)[0]
        torch.testing.assert_close(prefill, vec[f"seq{i}.logits_prefill"], **TOL)
        rows = [prefill[-1]] + [model(ids[:, j : j + 1], cache=cache)[0, -1] for j in range(k, ids.shape[1])]
        torch.testing.assert_close(torch.stack(rows), vec[f"seq{i}.logits_incremental"], **TOL)


@pytest.mark.conformance
def test_conformance_hidden_states_and_batch(conformance_dir: Path) -> None:
    vec, meta, model = _vectors(conformance_dir)
    last = meta["sequences"][-1]["index"]
    collected: list[torch.Tensor] = []
    model.hidden(model.embed(vec[f"seq{last}.input_ids"][None]), collect=collected)
    assert len(collected) == model.config.num_hidden_layers + 1
    for n, hidden in enumerate(collected):
        torch.testing.assert_close(hidden[0], vec[f"seq{last}.hidden_states.{n}"], **TOL)
    torch.testing.assert_close(model(vec["batch.input_ids"]), vec["batch.logits_full"], **TOL)
