"""Prefix reuse changes nothing but the work: logits and tokens with stored prefixes equal a full prefill."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch

from stepaudio.lm.cache import StaticKVCache
from stepaudio.lm.generate import GenerationConfig, TokenStream, generate, pad_prompts
from stepaudio.lm.prefix_cache import PrefixCache, prefix_cache_of_size
from stepaudio.lm.protocol import CausalLM, new_cache

VOICE = [1, 5, 9, 33, 2, 7, 60, 11, 12, 13, 14, 20, 21, 22]  # a shared prompt head, like a voice prompt
GREEDY_6 = GenerationConfig(max_new_tokens=6, stop_ids=(), prefill_chunk=4)


@pytest.fixture(params=["step1", "qwen2"])
def family(request: pytest.FixtureRequest) -> Callable[..., CausalLM]:
    return request.getfixturevalue("tiny_model" if request.param == "step1" else "tiny_qwen2")


def token_bytes(model: CausalLM) -> int:
    layout = model.kv_layout
    return 2 * layout.layers * layout.kv_heads * layout.head_dim * torch.finfo(model.dtype).bits // 8


def next_logits(model: CausalLM, prompt: list[int], prefix_cache: PrefixCache | None) -> tuple[torch.Tensor, int]:
    """Logits after `prompt`, prefilled on top of whatever the cache restores; and how many tokens it restored."""
    ids, valid = pad_prompts([prompt], model.pad_id)
    cache = new_cache(model, 1, len(prompt))
    reused = prefix_cache.restore(model, cache, [prompt], valid)[0] if prefix_cache else 0
    with torch.inference_mode():
        hidden = model.hidden(model.embed(ids[:, reused:]), cache=cache)
        return model.logits(hidden[:, -1]), reused


def test_logits_from_a_prefix_that_ends_mid_way_equal_a_full_prefill(family: Callable[..., CausalLM]) -> None:
    model = family(seed=3)
    store = PrefixCache(1 << 20)
    generate(model, [VOICE + [40, 41, 42]], GREEDY_6, prefix_cache=store)
    other = VOICE[:9] + [50, 51, 52, 53]  # diverges inside the stored run
    cold, _ = next_logits(model, other, None)
    warm, reused = next_logits(model, other, store)
    assert reused == 9
    torch.testing.assert_close(warm, cold, rtol=1e-5, atol=1e-5)
    assert store.cached_length(model, other) == 9 and store.cached_length(model, VOICE) == len(VOICE)


def test_greedy_tokens_with_reuse_equal_those_without(family: Callable[..., CausalLM]) -> None:
    model = family(seed=5)
    store = PrefixCache(1 << 20)
    sentences = [VOICE + [40, 41, 42, 43], VOICE + [30, 31], VOICE[:7] + [8, 8, 8, 8, 8], VOICE + [30, 31]]
    seen: list[int] = []
    for prompt in sentences:  # later sentences start from earlier ones' state (the last one entirely)
        stream = TokenStream(model, [prompt], GREEDY_6, prefix_cache=store)
        assert [s.tokens[0] for s in stream] == generate(model, [prompt], GREEDY_6)[0]
        seen.append(stream.reused_tokens[0])
    assert seen == [0, len(VOICE), 7, len(sentences[3]) - 1]


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_with_rows_reusing_different_lengths(family: Callable[..., CausalLM], side: str) -> None:
    model = family(seed=8)
    store = PrefixCache(1 << 20)
    generate(model, [VOICE], GREEDY_6, prefix_cache=store)
    batch = [VOICE + [40, 41], VOICE[:5] + [9, 9, 9], [7, 6, 5, 4]]
    stream = TokenStream(model, batch, GREEDY_6, padding_side=side, prefix_cache=store)
    tokens = [s.tokens for s in stream]
    assert [list(row) for row in zip(*tokens, strict=True)] == generate(model, batch, GREEDY_6, padding_side=side)
    if side == "right":  # every row resumes at one column: the least reuse, here none
        assert stream.reused_tokens == [0, 0, 0]
    else:  # left padding: the short unmatched row starts late, so the long rows skip their shared head
        assert stream.reused_tokens == [12, 4, 0]


def test_cancelled_prefill_keeps_its_finished_chunks(tiny_model: Callable[..., CausalLM]) -> None:
    model = tiny_model(seed=2)
    store = PrefixCache(1 << 20)
    event = threading.Event()
    original = model.hidden
    calls: list[int] = []

    def hidden_then_cancel(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2:
            event.set()
        return original(*args, **kwargs)  # type: ignore[arg-type]

    model.hidden = hidden_then_cancel  # type: ignore[method-assign]
    stream = TokenStream(model, [VOICE], GREEDY_6, cancel_event=event, prefix_cache=store)
    assert list(stream) == [] and stream.stop_reason == "cancelled"
    del model.hidden
    assert store.cached_length(model, VOICE) == 2 * GREEDY_6.prefill_chunk
    again = TokenStream(model, [VOICE], GREEDY_6, prefix_cache=store)
    assert [s.tokens[0] for s in again] == generate(model, [VOICE], GREEDY_6)[0]
    assert again.reused_tokens == [8]
    cancelled = threading.Event()
    cancelled.set()
    fresh = PrefixCache(1 << 20)
    assert list(TokenStream(model, [VOICE], GREEDY_6, cancel_event=cancelled, prefix_cache=fresh)) == []
    assert fresh.stats().tokens == 0


def test_shared_prefixes_are_stored_once_and_the_oldest_leaves_go_first(tiny_model: Callable[..., CausalLM]) -> None:
    model = tiny_model()
    per_token = token_bytes(model)
    store = PrefixCache(24 * per_token)
    generate(model, [VOICE + [40, 41]], GREEDY_6, prefix_cache=store)
    generate(model, [VOICE + [30, 31, 32]], GREEDY_6, prefix_cache=store)
    stats = store.stats()
    assert stats.tokens == len(VOICE) + 5 and stats.bytes == stats.tokens * per_token and stats.nodes == 3
    generate(model, [[3, 4, 5, 6, 7, 8]], GREEDY_6, prefix_cache=store)  # 25 tokens > 24: the oldest leaf goes
    assert store.stats().tokens == len(VOICE) + 3 + 6
    assert store.cached_length(model, VOICE + [40, 41]) == len(VOICE)
    assert store.cached_length(model, VOICE + [30, 31, 32]) == len(VOICE) + 3
    generate(model, [list(range(10, 40))], GREEDY_6, prefix_cache=store)  # alone larger than the bound
    assert store.stats().bytes <= store.max_bytes
    store.clear()
    assert store.stats().tokens == 0 and store.cached_length(model, VOICE) == 0


def test_state_is_per_model_dtype_and_ids(tiny_model: Callable[..., CausalLM]) -> None:
    store = PrefixCache(1 << 20)
    first, twin = tiny_model(seed=1), tiny_model(seed=2)
    generate(first, [VOICE], GREEDY_6, prefix_cache=store)
    assert store.cached_length(first, VOICE) == len(VOICE)
    assert store.cached_length(twin, VOICE) == 0  # same shape, other weights
    assert store.cached_length(first, [2, *VOICE]) == 0
    first.to(torch.float64)
    assert store.cached_length(first, VOICE) == 0
    assert generate(first, [VOICE], GREEDY_6, prefix_cache=store) == generate(first, [VOICE], GREEDY_6)
    nodes = store.stats().nodes
    del first
    assert store.stats().nodes < nodes  # a collected model's state is dropped


def test_spliced_embeddings_are_keyed_by_what_they_hold(family: Callable[..., CausalLM]) -> None:
    """Rows that replace their ids' embeddings (audio-encoder output) reuse state only for the same content."""
    model = family(seed=11)
    with torch.no_grad():
        base = model.embed(torch.tensor(VOICE))
    audio = {name: torch.randn(5, base.shape[1], generator=torch.Generator().manual_seed(seed))
             for name, seed in (("a", 1), ("b", 2))}
    store = PrefixCache(1 << 20)

    def run(name: str, tail: list[int]) -> tuple[list[list[int]], list[int]]:
        prompt = VOICE + tail
        embeds = torch.cat([base, model.embed(torch.tensor(tail)).detach()])
        embeds[3:8] = audio[name]
        keys = [*VOICE[:3], *((name, i) for i in range(5)), *prompt[8:]]
        stream = TokenStream(model, [prompt], GREEDY_6, prompt_embeds=[embeds], prefix_cache=store,
                             prefix_keys=[keys])
        tokens = [[s.tokens[0] for s in stream]]
        assert tokens == generate(model, [prompt], GREEDY_6, prompt_embeds=[embeds])
        return tokens, stream.reused_tokens

    run("a", [40, 41])
    assert run("b", [40, 41])[1] == [3]  # the same ids, other audio: only the text before it
    assert run("a", [30])[1] == [len(VOICE)]


def test_misuse_is_refused(tiny_model: Callable[..., CausalLM]) -> None:
    model = tiny_model()
    with torch.no_grad():
        embeds = [model.embed(torch.tensor(VOICE))]
    with pytest.raises(ValueError, match="needs prefix_keys"):
        TokenStream(model, [VOICE], GREEDY_6, prompt_embeds=embeds, prefix_cache=PrefixCache(1 << 20))
    with pytest.raises(ValueError, match="one key per prompt token"):
        TokenStream(model, [VOICE], GREEDY_6, prefix_cache=PrefixCache(1 << 20), prefix_keys=[VOICE[1:]])
    with pytest.raises(ValueError, match="positive"):
        PrefixCache(0)
    assert prefix_cache_of_size(0) is None
    sized = prefix_cache_of_size(3)
    assert sized is not None and sized.max_bytes == 3 << 20
    cache = StaticKVCache(model.kv_layout, 1, 4)
    cache.reserve(1)
    with pytest.raises(ValueError, match="empty"):
        PrefixCache(1 << 20).restore(model, cache, [[1, 2]], torch.ones(1, 2, dtype=torch.bool))
