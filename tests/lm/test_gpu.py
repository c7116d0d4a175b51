"""On CUDA the language models compute what they compute on the CPU (tiny random models of both families),
the cached decode equals the full forward, and the CUDA-graph decode step equals the eager one.

Every test needs a CUDA device and skips without one; `make gpu-check` runs them on the first GPU lent.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from stepaudio.lm.generate import GenerationConfig, TokenStream
from stepaudio.lm.protocol import CausalLM, new_cache

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
PROMPTS = [[1, 5, 9, 33, 2, 7, 60, 11, 12, 13, 14], [1, 40], [1, 3, 3, 3, 8]]


def _logits(model: CausalLM, ids: torch.Tensor) -> torch.Tensor:
    return model.logits(model.hidden(model.embed(ids)))


def test_forward_on_cuda_equals_cpu(family: Callable[..., CausalLM], cuda: torch.device) -> None:
    model = family(seed=3)
    ids = torch.randint(0, 64, (2, 17), generator=torch.Generator().manual_seed(0))
    on_cpu = _logits(model, ids)
    on_gpu = _logits(model.to(cuda), ids.to(cuda))
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-4, rtol=1e-4)


def test_bf16_forward_on_cuda_is_close_to_fp32(family: Callable[..., CausalLM], cuda: torch.device) -> None:
    model = family(seed=4)
    ids = torch.randint(0, 64, (1, 24), generator=torch.Generator().manual_seed(1))
    exact = _logits(model, ids)
    half_model = family(seed=4, dtype=torch.bfloat16)
    half_model.load_state_dict(model.state_dict())  # the same weights rounded (bf16 draws differ from fp32 draws)
    half = _logits(half_model.to(cuda), ids.to(cuda)).float().cpu()
    assert float((half - exact).norm() / exact.norm()) < 0.03


def test_cached_decode_on_cuda_equals_full_forward(family: Callable[..., CausalLM], cuda: torch.device) -> None:
    model = family(seed=5).to(cuda)
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(2)).to(cuda)
    full = _logits(model, ids)
    cache = new_cache(model, 2, 32)
    parts = [model.logits(model.hidden(model.embed(ids[:, :5]), cache=cache))]
    parts += [model.logits(model.hidden(model.embed(ids[:, i : i + 1]), cache=cache)) for i in range(5, 12)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-4, rtol=1e-4)


def test_greedy_generation_on_cuda_equals_cpu(family: Callable[..., CausalLM], cuda: torch.device) -> None:
    config = GenerationConfig(max_new_tokens=8, stop_ids=())
    on_cpu = [s.tokens for s in TokenStream(family(seed=6), PROMPTS, config)]
    on_gpu = [s.tokens for s in TokenStream(family(seed=6).to(cuda), PROMPTS, config)]
    assert on_gpu == on_cpu


def test_cuda_graph_decode_equals_eager(family: Callable[..., CausalLM], cuda: torch.device) -> None:
    from stepaudio.lm.accel import StaticDecoder

    model = family(seed=7).to(cuda)
    config = GenerationConfig(max_new_tokens=10, stop_ids=())
    eager = [s.tokens for s in TokenStream(model, PROMPTS, config)]
    graphed = [s.tokens for s in TokenStream(model, PROMPTS, config,
                                             decode_fn=StaticDecoder.factory(model, use_graph=True))]
    assert graphed == eager


def test_cuda_graph_step_logits_equal_eager_step(family: Callable[..., CausalLM], cuda: torch.device) -> None:
    """The replayed graph gives the eager step's logits, step after step (the graph reads the live cache)."""
    from stepaudio.lm.accel import StaticDecoder

    model = family(seed=8).to(cuda)
    prompt = torch.tensor([PROMPTS[0]], device=cuda)
    caches = [new_cache(model, 1, 32) for _ in range(2)]
    for cache in caches:
        model.hidden(model.embed(prompt), cache=cache)
    eager, graph = StaticDecoder(model, caches[0]), StaticDecoder(model, caches[1], use_graph=True)
    valid = torch.ones(1, 1, dtype=torch.bool, device=cuda)
    for step, token in enumerate([5, 9, 2, 40]):
        ids = torch.tensor([[token]], device=cuda)
        positions = torch.tensor([[prompt.shape[1] + step]], device=cuda)
        torch.testing.assert_close(graph(ids, positions, valid), eager(ids, positions, valid), atol=1e-5, rtol=1e-5)
