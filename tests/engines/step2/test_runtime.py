"""Step2Runtime's prefix reuse: a second turn prefills only what is new (the first turn's audio rows included)
and writes the same tokens as a prefill from scratch; the same ids over other audio are never reused."""

from __future__ import annotations

import numpy as np

from stepaudio.audio.io import Audio
from stepaudio.engines.step2.runtime import Prompt, Step2Runtime
from stepaudio.lm import GREEDY, GenerationConfig
from stepaudio.lm.prefix_cache import PrefixCache
from stepaudio.testing.tiny_stack import speech_like
from stepaudio.text.step2_prompts import Turn, render


def spoken(seconds: float, seed: int) -> Audio:
    return Audio(speech_like(seconds, 16000, seed), 16000)


def _prompt(runtime: Step2Runtime, questions: list[Audio], replies: list[str]) -> Prompt:
    """System, then each spoken question (and the reply it got), the assistant turn open."""
    turns, mels = [Turn("system", "You are a helpful assistant.")], []
    for index, question in enumerate(questions):
        item, pieces = runtime.audio(question)
        mels += pieces
        turns.append(Turn("user", (item,)))
        if index < len(replies):
            turns.append(Turn("assistant", replies[index]))
    turns.append(Turn("assistant", None))
    return runtime.prompt(render(turns, runtime.vocab), mels)


def test_a_second_turn_reuses_the_first_and_writes_the_same_tokens(step2_runtime: Step2Runtime) -> None:
    cached = Step2Runtime(step2_runtime.model, step2_runtime.tokenizer, PrefixCache(64 << 20))
    plain = Step2Runtime(step2_runtime.model, step2_runtime.tokenizer)
    config = GenerationConfig(max_new_tokens=12, stop_ids=cached.stop_ids, sampling=GREEDY)
    first_question, second_question = spoken(1.5, 3), spoken(1.0, 4)
    first = _prompt(cached, [first_question], [])
    reply = list(cached.run(first, config))
    assert reply == list(plain.run(first, config))
    assert cached.prefix_cache is not None and cached.prefix_cache.stats().reused_tokens == 0
    text = "".join(piece for piece in cached.split(iter(reply)) if isinstance(piece, str))
    second = _prompt(cached, [first_question, second_question], [text])
    assert list(cached.run(second, config)) == list(plain.run(second, config))
    # everything up to the first reply's turn came from the cache, the first question's audio rows included
    patch = cached.vocab.audio_patch_id
    last_audio_row = max(i for i, token in enumerate(first.ids) if token == patch)
    shared = next((i for i, (a, b) in enumerate(zip(first.ids, second.ids, strict=False)) if a != b),
                  len(first.ids))
    reused = cached.prefix_cache.stats().reused_tokens
    assert last_audio_row < shared and reused == shared


def test_the_same_ids_over_other_audio_are_not_reused(step2_runtime: Step2Runtime) -> None:
    runtime = Step2Runtime(step2_runtime.model, step2_runtime.tokenizer, PrefixCache(64 << 20))
    one = _prompt(runtime, [spoken(1.0, 5)], [])
    other = _prompt(runtime, [spoken(1.0, 6)], [])
    assert one.ids == other.ids
    keys_one, keys_other = runtime.prefix_keys(one), runtime.prefix_keys(other)
    audio_rows = [i for i, token in enumerate(one.ids) if token == runtime.vocab.audio_patch_id]
    assert [i for i, (a, b) in enumerate(zip(keys_one, keys_other, strict=True)) if a != b] == audio_rows
    assert keys_one == runtime.prefix_keys(one)  # a digest, stable for the same audio
    config = GenerationConfig(max_new_tokens=2, stop_ids=runtime.stop_ids, sampling=GREEDY)
    list(runtime.run(one, config))
    list(runtime.run(other, config))
    assert runtime.prefix_cache is not None and runtime.prefix_cache.stats().reused_tokens == audio_rows[0]
    assert not np.array_equal(one.mels[0].numpy(), other.mels[0].numpy())


def test_spoken_prompts_asked_at_once_share_decode_steps_and_get_their_tokens_alone(
        step2_runtime: Step2Runtime) -> None:
    """With lm_batch rows, prompts with spliced audio rows, asked from several threads at once, decode together
    and each gets the tokens it gets alone (prefix reuse on, so the second ask of a conversation joins from it)."""
    import threading

    batched = Step2Runtime(step2_runtime.model, step2_runtime.tokenizer, PrefixCache(64 << 20), lm_batch=3)
    alone = Step2Runtime(step2_runtime.model, step2_runtime.tokenizer)
    assert batched.generations.batcher is not None and alone.generations.batcher is None
    config = GenerationConfig(max_new_tokens=10, stop_ids=(), sampling=GREEDY)
    prompts = [_prompt(batched, [spoken(1.0 + 0.3 * k, 10 + k)], []) for k in range(3)]
    expected = [list(alone.run(prompt, config)) for prompt in prompts]
    got: list[list[int] | None] = [None] * 3
    threads = [threading.Thread(target=lambda k=k: got.__setitem__(k, list(batched.run(prompts[k], config))))
               for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == expected and all(len(tokens) == 10 for tokens in expected)
    core = batched.generations.batcher.core
    assert core.row_steps > core.steps  # some steps decoded two or three prompts
