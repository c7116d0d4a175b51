from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepaudio.lm.cache import StaticKVCache
from stepaudio.lm.generate import GenerationConfig, TokenStream, generate
from stepaudio.lm.protocol import CausalLM, new_cache
from stepaudio.lm.sampling import GREEDY, TTS_SAMPLING
from stepaudio.lm.step1.loading import load_step1
from stepaudio.lm.step1.model import Step1ForCausalLM

Factory = Callable[..., Step1ForCausalLM]
PROMPTS = [[1, 5, 9, 33, 2, 7, 60, 11, 12, 13, 14], [1, 40], [1, 3, 3, 3, 8]]


@pytest.fixture(params=["step1", "qwen2"])
def family(request: pytest.FixtureRequest) -> Callable[..., CausalLM]:
    """Each model family's tiny random factory: the same generation code must drive every one."""
    return request.getfixturevalue("tiny_model" if request.param == "step1" else "tiny_qwen2")


def _greedy_reference(model: CausalLM, prompt: list[int], n: int) -> list[int]:
    """Greedy continuation by full forwards without any cache (the slow, obvious way)."""
    ids = list(prompt)
    for _ in range(n):
        logits = model.logits(model.hidden(model.embed(torch.tensor([ids]))))
        ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt) :]


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_greedy_equals_single_rows(family: Callable[..., CausalLM], side: str) -> None:
    model = family(seed=4)
    config = GenerationConfig(max_new_tokens=7, stop_ids=())
    batch = generate(model, PROMPTS, config, padding_side=side)
    assert batch == [_greedy_reference(model, p, 7) for p in PROMPTS]


def test_generation_from_prompt_embeddings(family: Callable[..., CausalLM]) -> None:
    """Embeddings of the ids reproduce the ids' run; other embeddings steer it; rows must match prompts."""
    model = family(seed=6)
    config = GenerationConfig(max_new_tokens=6, stop_ids=(), prefill_chunk=4)
    with torch.no_grad():
        embeds = [model.embed(torch.tensor(p)) for p in PROMPTS]
    assert generate(model, PROMPTS, config, prompt_embeds=embeds) == generate(model, PROMPTS, config)
    steered = [e.clone() for e in embeds]
    steered[0][2:6] = torch.randn(4, steered[0].shape[1], generator=torch.Generator().manual_seed(0))
    changed = generate(model, PROMPTS, config, prompt_embeds=steered)
    assert changed[0] != generate(model, PROMPTS, config)[0]
    assert changed[0] == generate(model, PROMPTS[:1], config, prompt_embeds=steered[:1])[0]
    with pytest.raises(ValueError, match="do not match"):
        TokenStream(model, PROMPTS, config, prompt_embeds=[embeds[0], embeds[0], embeds[2]])
    with pytest.raises(ValueError, match="2 prompt embeddings"):
        TokenStream(model, PROMPTS, config, prompt_embeds=embeds[:2])


def test_stop_ids_end_rows_independently(tiny_model: Factory) -> None:
    model = tiny_model(seed=4)
    free = generate(model, PROMPTS, GenerationConfig(max_new_tokens=7, stop_ids=()))
    stop = free[1][2]
    stream = TokenStream(model, PROMPTS, GenerationConfig(max_new_tokens=7, stop_ids=(stop,)))
    steps = list(stream)
    row1 = [s.tokens[1] for s in steps]
    assert row1[:3] == free[1][:3] and all(t == -1 for t in row1[3:])
    assert steps[2].finished[1] and stream.generated[1] == free[1][:3]
    for row in (0, 2):
        if stop not in free[row]:
            assert stream.generated[row] == free[row]


def test_cancellation_stops_the_stream(tiny_model: Factory) -> None:
    model = tiny_model()
    stream = TokenStream(model, [[1, 2, 3]], GenerationConfig(max_new_tokens=50, stop_ids=()))
    seen = []
    for step in stream:
        seen.append(step.index)
        if step.index == 2:
            stream.cancel()
    assert seen == [0, 1, 2] and stream.stop_reason == "cancelled"
    event = threading.Event()
    event.set()
    early = TokenStream(model, [[1, 2, 3]], GenerationConfig(max_new_tokens=5, stop_ids=()), cancel_event=event)
    assert list(early) == [] and early.stop_reason == "cancelled"


def test_max_new_tokens_and_closing_the_iterator(tiny_model: Factory) -> None:
    model = tiny_model()
    stream = TokenStream(model, [[1, 2]], GenerationConfig(max_new_tokens=4, stop_ids=()))
    assert len(list(stream)) == 4 and stream.stop_reason == "max_new_tokens"
    it = iter(TokenStream(model, [[1, 2]], GenerationConfig(max_new_tokens=40, stop_ids=())))
    next(it)
    it.close()  # a consumer may simply stop iterating: the generator unwinds cleanly


def test_seeded_sampling_is_reproducible(tiny_model: Factory) -> None:
    model = tiny_model(seed=5)
    config = GenerationConfig(max_new_tokens=12, stop_ids=(), sampling=TTS_SAMPLING, seed=123)
    a = generate(model, [[1, 2, 3]], config)
    b = generate(model, [[1, 2, 3]], config)
    c = generate(model, [[1, 2, 3]], GenerationConfig(max_new_tokens=12, stop_ids=(), sampling=TTS_SAMPLING, seed=9))
    assert a == b and a != c
    tokens = a[0]
    for i in range(10, len(tokens)):  # the repetition rule held at every step
        window = ([1, 2, 3] + tokens)[i + 3 - 10 : i + 3]
        if window.count(window[-1]) > 1:
            assert tokens[i] != window[-1]


@pytest.mark.conformance
def test_conformance_greedy_new_ids(conformance_dir: Path) -> None:
    vec = load_file(conformance_dir / "step1" / "vectors.safetensors")
    model = load_step1(conformance_dir / "step1")
    n_seq = len({k.split(".")[0] for k in vec if k.startswith("seq")})
    prompts = [vec[f"seq{i}.input_ids"].tolist() for i in range(n_seq)]
    expected = [vec[f"seq{i}.greedy_new_ids"].tolist() for i in range(n_seq)]
    n_new = len(expected[0])
    config = GenerationConfig(max_new_tokens=n_new, stop_ids=(), sampling=GREEDY)
    for prompt, ids in zip(prompts, expected, strict=True):
        assert generate(model, [prompt], config) == [ids]
    assert generate(model, prompts, config) == expected  # one padded batch


def test_static_decoder_matches_eager_generation(family: Callable[..., CausalLM]) -> None:
    """The fixed-shape step used for CUDA graphs / torch.compile, run eagerly on CPU."""
    from stepaudio.lm.accel import StaticDecoder

    model = family(seed=7)
    config = GenerationConfig(max_new_tokens=6, stop_ids=())
    eager = TokenStream(model, PROMPTS, config)
    static = TokenStream(model, PROMPTS, config, decode_fn=StaticDecoder.factory(model))
    assert [s.tokens for s in eager] == [s.tokens for s in static]
    with pytest.raises(ValueError, match="CUDA"):
        StaticDecoder.factory(model, use_graph=True)(eager_cache(model))


def eager_cache(model: CausalLM) -> StaticKVCache:
    return new_cache(model, 1, 4)


@pytest.mark.slow
def test_compiled_static_decoder_matches_eager(tiny_model: Factory) -> None:
    """torch.compile of the static decode step (inductor on CPU; minutes of compilation)."""
    from stepaudio.lm.accel import StaticDecoder

    model = tiny_model(seed=7)
    config = GenerationConfig(max_new_tokens=6, stop_ids=())
    eager = [s.tokens for s in TokenStream(model, PROMPTS[:2], config)]
    compiled = StaticDecoder.factory(model, compile_mode="default")
    assert eager == [s.tokens for s in TokenStream(model, PROMPTS[:2], config, decode_fn=compiled)]


@pytest.mark.parametrize("side", ["left", "right"])
def test_chunked_prefill_equals_single_pass(family: Callable[..., CausalLM], side: str) -> None:
    model = family(seed=10)
    whole = generate(model, PROMPTS, GenerationConfig(max_new_tokens=4, stop_ids=()), padding_side=side)
    chunked = GenerationConfig(max_new_tokens=4, stop_ids=(), prefill_chunk=3)
    assert generate(model, PROMPTS, chunked, padding_side=side) == whole


def test_cancel_between_prefill_chunks(tiny_model: Factory) -> None:
    model = tiny_model()
    event = threading.Event()
    calls = []
    original = model.hidden

    def hidden_then_cancel(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        event.set()
        return original(*args, **kwargs)  # type: ignore[arg-type]

    model.hidden = hidden_then_cancel  # type: ignore[method-assign]
    config = GenerationConfig(max_new_tokens=5, stop_ids=(), prefill_chunk=2)
    stream = TokenStream(model, [[1, 2, 3, 4, 5, 6]], config, cancel_event=event)
    assert list(stream) == [] and stream.stop_reason == "cancelled" and len(calls) == 1
