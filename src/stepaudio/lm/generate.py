"""Prefill + decode as a streaming, cancellable iterator over a (possibly padded) batch of prompts.

Drives any `lm.protocol.CausalLM`; the prompt may come as ids alone or with its embeddings (a family
that splices audio-encoder rows into the prompt hands those rows in here). With a `PrefixCache`, the K/V of
prompt prefixes seen before are copied in and only the rest is prefilled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from stepaudio.lm.cache import StaticKVCache
from stepaudio.lm.prefix_cache import PrefixCache
from stepaudio.lm.protocol import CausalLM, new_cache
from stepaudio.lm.sampling import GREEDY, SamplingConfig, choose_tokens

# (ids [B, 1], positions [B, 1], valid [B, 1]) -> logits [B, V]; bound to one cache.
DecodeFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class GenerationConfig:
    """How long to generate and when to stop. `stop_ids` has no default: they are the model family's
    (`stepaudio.text.vocab`); an empty tuple runs to `max_new_tokens`."""

    max_new_tokens: int = 256
    stop_ids: tuple[int, ...] = field(kw_only=True)
    sampling: SamplingConfig = field(default_factory=lambda: GREEDY)
    seed: int | None = None
    prefill_chunk: int = 256  # prompt tokens per forward: bounds the [heads, chunk, keys] attention bias


@dataclass(frozen=True)
class GeneratedStep:
    """One decode step: the new token per row (-1 for rows that had already stopped)."""

    index: int
    tokens: tuple[int, ...]
    finished: tuple[bool, ...]


def pad_embeds(rows: Sequence[torch.Tensor], side: str = "left") -> torch.Tensor:
    """Stack per-prompt embeddings [L_i, H] into [B, L, H] with zeros where `pad_prompts` pads."""
    width = max(int(r.shape[0]) for r in rows)
    out = rows[0].new_zeros(len(rows), width, rows[0].shape[-1])
    for row, value in enumerate(rows):
        start = width - value.shape[0] if side == "left" else 0
        out[row, start : start + value.shape[0]] = value
    return out


def pad_prompts(
    prompts: Sequence[Sequence[int]], pad_id: int, side: str = "left"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack prompts into ids [B, L] and a real-token mask [B, L], padding on `side`."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    if side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', got {side!r}")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    valid = torch.zeros(len(prompts), width, dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        cols = slice(width - len(prompt), width) if side == "left" else slice(0, len(prompt))
        ids[row, cols] = torch.tensor(list(prompt), dtype=torch.long)
        valid[row, cols] = True
    return ids, valid


class TokenStream:
    """Iterate to run the model: one `GeneratedStep` per decode step.

    Stops at a stop id (per row; the stop id is yielded), at `max_new_tokens`, or when `cancel()`
    is called (from any thread) or the `cancel_event` is set; `stop_reason` says which.

    `prompt_embeds`, when given, holds each prompt's input embeddings [len(prompt), H] and replaces the
    embedding of its ids during prefill; the ids still count as history for the repetition rules.

    `prefix_cache`, when given, supplies the K/V of each prompt's longest stored prefix and keeps the K/V of
    what this stream prefilled (also the finished chunks of a cancelled prefill); `reused_tokens` counts the
    prompt tokens per row that were not prefilled. It keys each token by its id, or by its entry of
    `prefix_keys` (one hashable per prompt token, required with `prompt_embeds`: whatever fixes that token's
    embedding, e.g. its id for text and a digest of the audio plus the row index for spliced encoder rows).
    """

    def __init__(
        self,
        model: CausalLM,
        prompts: Sequence[Sequence[int]],
        config: GenerationConfig,
        *,
        padding_side: str = "left",
        cancel_event: threading.Event | None = None,
        decode_fn: Callable[[StaticKVCache], DecodeFn] | None = None,
        prompt_embeds: Sequence[torch.Tensor] | None = None,
        prefix_cache: PrefixCache | None = None,
        prefix_keys: Sequence[Sequence[Hashable]] | None = None,
    ) -> None:
        if prefix_keys is not None and [len(k) for k in prefix_keys] != [len(p) for p in prompts]:
            raise ValueError("prefix keys need one key per prompt token")
        if prompt_embeds is not None and prefix_cache is not None and prefix_keys is None:
            raise ValueError("prefix reuse of prompts given as embeddings needs prefix_keys (what fixes each "
                             "embedding); ids alone do not say which audio rows were spliced in")
        if prompt_embeds is not None:
            if len(prompt_embeds) != len(prompts):
                raise ValueError(f"{len(prompt_embeds)} prompt embeddings for {len(prompts)} prompts")
            for prompt, rows in zip(prompts, prompt_embeds, strict=True):
                if rows.ndim != 2 or rows.shape[0] != len(prompt):
                    raise ValueError(f"prompt embeddings {list(rows.shape)} do not match a prompt of {len(prompt)} ids")
        self.model = model
        self.config = config
        self.padding_side = padding_side
        self.cancel_event = cancel_event or threading.Event()
        self.prompts = [list(p) for p in prompts]
        self.stop_reason: str | None = None
        self.generated: list[list[int]] = [[] for _ in self.prompts]
        self._decode_fn = decode_fn
        self._prompt_embeds = prompt_embeds
        self.prefix_cache = prefix_cache
        self._prefix_keys: Sequence[Sequence[Hashable]] = prefix_keys if prefix_keys is not None else self.prompts
        self.reused_tokens: list[int] = [0 for _ in self.prompts]

    def cancel(self) -> None:
        self.cancel_event.set()

    def __iter__(self) -> Iterator[GeneratedStep]:
        model, cfg = self.model, self.config
        device = model.device
        ids, valid = pad_prompts(self.prompts, model.pad_id, self.padding_side)
        ids, valid = ids.to(device), valid.to(device)
        batch, width = ids.shape
        embeds = None
        if self._prompt_embeds is not None:
            embeds = pad_embeds(self._prompt_embeds, self.padding_side).to(device=device, dtype=model.dtype)
        cache = new_cache(model, batch, width + cfg.max_new_tokens)
        generator = None
        if cfg.seed is not None:
            generator = torch.Generator(device=device).manual_seed(cfg.seed)
        lengths = valid.sum(dim=1)
        positions = (valid.long().cumsum(1) - 1).clamp(min=0)
        # History is kept right-aligned (left padded) whatever the model's padding side.
        history, hist_valid = pad_prompts(self.prompts, model.pad_id, "left")
        history, hist_valid = history.to(device), hist_valid.to(device)
        stops = torch.tensor(cfg.stop_ids, dtype=torch.long, device=device)
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        decode = self._decode_fn(cache) if self._decode_fn else _eager_decode(model, cache)
        if self.cancel_event.is_set():
            self.stop_reason = "cancelled"
            return
        with torch.inference_mode():
            last = lengths - 1 if self.padding_side == "right" else torch.full_like(lengths, width - 1)
            first = 0
            if self.prefix_cache is not None:
                self.reused_tokens = self.prefix_cache.restore(model, cache, self._prefix_keys, valid)
                first = cache.length
            prefilled, reached = _prefill(
                model, ids, embeds, positions, valid, cache, last, cfg.prefill_chunk, self.cancel_event, first
            )
            if self.prefix_cache is not None and reached > first:
                self.prefix_cache.store(model, cache, self._prefix_keys, valid, reached)
            if prefilled is None:
                self.stop_reason = "cancelled"
                return
            logits = prefilled
            for index in range(cfg.max_new_tokens):
                tokens = choose_tokens(logits, history, cfg.sampling, generator, hist_valid)
                tokens = torch.where(done, torch.full_like(tokens, -1), tokens)
                newly = ~done & torch.isin(tokens, stops)
                for row, tok in enumerate(tokens.tolist()):
                    if tok >= 0:
                        self.generated[row].append(tok)
                step = GeneratedStep(index, tuple(tokens.tolist()), tuple((done | newly).tolist()))
                done = done | newly
                yield step
                if bool(done.all()):
                    self.stop_reason = "stop_id"
                    return
                if self.cancel_event.is_set():
                    self.stop_reason = "cancelled"
                    return
                if index + 1 == cfg.max_new_tokens:
                    break
                feed = tokens.clamp(min=0)
                history = torch.cat([history, feed[:, None]], dim=1)
                hist_valid = torch.cat([hist_valid, ~done[:, None]], dim=1)
                logits = decode(feed[:, None], lengths[:, None] + index, ~done[:, None])
        self.stop_reason = "max_new_tokens"


def _prefill(
    model: CausalLM,
    ids: torch.Tensor,
    embeds: torch.Tensor | None,
    positions: torch.Tensor,
    valid: torch.Tensor,
    cache: StaticKVCache,
    last: torch.Tensor,
    chunk: int,
    cancel: threading.Event,
    first: int = 0,
) -> tuple[torch.Tensor | None, int]:
    """Feed the prompt (its `embeds`, or the embedded ids) in chunks from column `first` (the cache holds the
    columns before it); logits [B, V] at each row's index `last` (None if cancelled) and the column reached."""
    rows = torch.arange(ids.shape[0], device=ids.device)
    picked: torch.Tensor | None = None
    reached = first
    for start in range(first, ids.shape[1], max(1, chunk)):
        if cancel.is_set():
            return None, reached
        end = min(start + max(1, chunk), ids.shape[1])
        x = embeds[:, start:end] if embeds is not None else model.embed(ids[:, start:end])
        hidden = model.hidden(x, positions[:, start:end], cache, valid[:, start:end])
        here = hidden[rows, (last - start).clamp(0, end - start - 1)]
        inside = ((last >= start) & (last < end))[:, None]
        picked = here if picked is None else torch.where(inside, here, picked)
        reached = end
    assert picked is not None
    return model.logits(picked), reached


def _eager_decode(model: CausalLM, cache: StaticKVCache) -> DecodeFn:
    def step(ids: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return model.logits(model.hidden(model.embed(ids), positions, cache, valid)[:, -1])

    return step


def generate(
    model: CausalLM,
    prompts: Sequence[Sequence[int]],
    config: GenerationConfig,
    *,
    padding_side: str = "left",
    prompt_embeds: Sequence[torch.Tensor] | None = None,
    prefix_cache: PrefixCache | None = None,
) -> list[list[int]]:
    """Run a TokenStream to the end; the new ids per row, stop ids removed."""
    stream = TokenStream(model, prompts, config, padding_side=padding_side, prompt_embeds=prompt_embeds,
                         prefix_cache=prefix_cache)
    for _ in stream:
        pass
    return [[t for t in row if t not in config.stop_ids] for row in stream.generated]
