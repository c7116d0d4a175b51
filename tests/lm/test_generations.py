"""A model's generations run alone or batched by the same call, with the tokens they get alone either way."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch

from stepaudio.errors import OptionError
from stepaudio.lm.generate import GenerationConfig, TokenStream
from stepaudio.lm.generations import DEFAULT_ROWS, Generations, default_rows, planned_rows
from stepaudio.lm.prefix_cache import PrefixCache
from stepaudio.lm.protocol import CausalLM
from stepaudio.lm.sampling import GREEDY, TTS_SAMPLING

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PROMPTS = [[1, 5, 9, 33, 2, 7, 60, 11], [1, 40], [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22]]


def _configs() -> list[GenerationConfig]:
    return [GenerationConfig(max_new_tokens=n, stop_ids=(), sampling=s, seed=7 + n)
            for n, s in ((9, GREEDY), (14, TTS_SAMPLING), (6, GREEDY))]


def _tokens(steps: object) -> list[int]:
    return [step.tokens[0] for step in steps]  # type: ignore[attr-defined]


def test_rows_by_device_and_as_asked(tiny_model: Callable[..., CausalLM]) -> None:
    model = tiny_model()
    assert default_rows(model) == 1 < DEFAULT_ROWS  # CPU: several rows cost several
    assert planned_rows("cpu", None) == 1 and planned_rows("cuda:0", None) == DEFAULT_ROWS == 4
    assert planned_rows("cpu", 3) == 3
    assert Generations(model).batcher is None and Generations(model, 2).batcher is not None
    with pytest.raises(OptionError, match="not 0"):
        Generations(model, 0)


def test_concurrent_requests_decode_together_with_their_tokens_alone(family: Callable[..., CausalLM]) -> None:
    model = family()
    configs = _configs()
    expected = [_tokens(TokenStream(model, [p], c)) for p, c in zip(PROMPTS, configs, strict=True)]
    generations = Generations(model, 3, PrefixCache(8 << 20))
    got: list[list[int] | None] = [None] * 3
    threads = [threading.Thread(target=lambda k=k: got.__setitem__(
        k, _tokens(generations.stream(PROMPTS[k], configs[k])))) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    generations.close()
    assert got == expected
    assert generations.batcher is not None
    assert generations.batcher.core.row_steps > generations.batcher.core.steps


def test_prompts_given_as_embeddings_with_keys_batched_or_alone(family: Callable[..., CausalLM]) -> None:
    """Rows given as embeddings (spliced audio) reach the batch and the prefix cache by their keys; a request alone
    gets the same tokens."""
    model = family()
    prompt = PROMPTS[0]
    with torch.inference_mode():
        embeds = model.embed(torch.tensor(prompt))
    embeds = embeds.flip(0)  # not the ids' own embeddings: the result must come from these rows
    keys = [("row", i) for i in range(len(prompt))]
    config = GenerationConfig(max_new_tokens=8, stop_ids=(), sampling=GREEDY)
    alone = Generations(model, 1, PrefixCache(8 << 20))
    batched = Generations(model, 2, PrefixCache(8 << 20))
    reference = _tokens(TokenStream(model, [prompt], config, prompt_embeds=[embeds]))
    first = _tokens(alone.stream(prompt, config, prompt_embeds=embeds, prefix_keys=keys))
    assert first == reference
    assert first == _tokens(batched.stream(prompt, config, prompt_embeds=embeds, prefix_keys=keys))
    assert first == _tokens(alone.stream(prompt, config, prompt_embeds=embeds, prefix_keys=keys))  # from the cache
    assert alone.prefix_cache is not None and alone.prefix_cache.stats().reused_tokens > 0
    batched.close()


def test_stopping_early_frees_the_row(tiny_model: Callable[..., CausalLM]) -> None:
    generations = Generations(tiny_model(), 2)
    config = GenerationConfig(max_new_tokens=50, stop_ids=(), sampling=GREEDY)
    stream = generations.stream(PROMPTS[1], config)
    assert len([next(stream) for _ in range(3)]) == 3
    stream.close()  # the consumer stops listening
    assert len(_tokens(generations.stream(PROMPTS[2], GenerationConfig(max_new_tokens=4, stop_ids=(),
                                                                        sampling=GREEDY)))) == 4
    generations.close()
    assert generations.batcher is not None and not generations.batcher.core.active
