from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepaudio.lm.generate import GenerationConfig, generate
from stepaudio.lm.protocol import new_cache
from stepaudio.lm.qwen2.loading import load_qwen2
from stepaudio.lm.qwen2.model import Qwen2ForCausalLM
from stepaudio.lm.qwen2.rope import apply_rope, inverse_frequencies, rope_tables
from stepaudio.lm.sampling import GREEDY

TOL = {"atol": 1e-4, "rtol": 1e-4}


def test_rope_rotates_pairs_by_position_times_frequency() -> None:
    inv = inverse_frequencies(4, 100.0)
    assert torch.allclose(inv, torch.tensor([1.0, 0.1]))
    cos, sin = rope_tables(torch.tensor([[3]]), inv, torch.float64)
    x = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64).view(1, 1, 1, 4)
    out = apply_rope(x, cos, sin)[0, 0, 0]
    # dimension pairs (0, 2) and (1, 3) rotate by 3 * 1 and 3 * 0.1 radians
    expected = [math.cos(3), -math.sin(0.3), math.sin(3), math.cos(0.3)]
    assert torch.allclose(out, torch.tensor(expected, dtype=torch.float64), atol=1e-6)


def test_scores_depend_only_on_relative_position() -> None:
    inv = inverse_frequencies(8, 10000.0)
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8, generator=generator), torch.randn(1, 1, 1, 8, generator=generator)

    def score(pq: int, pk: int) -> float:
        cq, sq = rope_tables(torch.tensor([[pq]]), inv, torch.float32)
        ck, sk = rope_tables(torch.tensor([[pk]]), inv, torch.float32)
        return float((apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum())

    assert score(7, 4) == pytest.approx(score(103, 100), abs=1e-4)
    assert score(7, 4) != pytest.approx(score(7, 5), abs=1e-3)


def _conformance(conformance_dir: Path) -> tuple[dict[str, torch.Tensor], dict, Qwen2ForCausalLM]:
    llm = conformance_dir / "step-audio2" / "llm"
    meta = json.loads((llm / "meta.json").read_text())
    return load_file(llm / "vectors.safetensors"), meta, load_qwen2(llm)


@pytest.mark.conformance
def test_conformance_prefill_cached_decode_and_full_logits(conformance_dir: Path) -> None:
    """The spliced prompt embeddings through our decoder: every logit row the reference saved."""
    vec, meta, model = _conformance(conformance_dir)
    embeds = vec["outputs.inputs_embeds"][None]
    decode_ids = vec["outputs.decode_ids"]
    with torch.inference_mode():
        cache = new_cache(model, 1, embeds.shape[1] + len(decode_ids))
        prefill = model.logits(model.hidden(embeds, cache=cache))[0]
        torch.testing.assert_close(prefill, vec["outputs.logits_prefill"], **TOL)
        rows = [prefill[-1]] + [model(decode_ids[None, j : j + 1], cache=cache)[0, -1] for j in range(len(decode_ids))]
        torch.testing.assert_close(torch.stack(rows), vec["outputs.logits_decode"], **TOL)
        extended = torch.cat([embeds, model.embed(decode_ids[None])], dim=1)
        full = model.logits(model.hidden(extended))[0]
        torch.testing.assert_close(full, vec["outputs.logits_full_after_decode"], **TOL)
    assert decode_ids.tolist() == meta["greedy_ids_hf_generate"]


@pytest.mark.conformance
def test_conformance_greedy_generation_from_embeddings(conformance_dir: Path) -> None:
    vec, _meta, model = _conformance(conformance_dir)
    ids = vec["inputs.input_ids"].tolist()
    expected = vec["outputs.decode_ids"].tolist()
    config = GenerationConfig(max_new_tokens=len(expected), stop_ids=model.config.eos_token_ids, sampling=GREEDY)
    assert generate(model, [ids], config, prompt_embeds=[vec["outputs.inputs_embeds"]]) == [expected]
    embeds = vec["outputs.inputs_embeds"]
    batch = generate(model, [ids, ids[:40]], config, prompt_embeds=[embeds, embeds[:40]])  # left padded
    assert batch[0] == expected
