"""KV state of prompt prefixes kept across requests, so a prompt that starts like an earlier one prefills only
what is new (a voice prompt once per voice, a system prompt and a conversation's earlier turns once per turn).

Prompts are stored per model in a token trie (a radix tree): a prefix shared by many prompts (the ~480-token
TTS voice prompt, a session's history) is held once, each node with the K/V of its own tokens. A new prompt
takes the longest stored prefix, which may end mid-way through a node. The K/V of token i depends only on
tokens 0..i at positions 0..i, so a copied prefix is the prefix a full prefill would compute. Memory is
bounded in bytes; the least recently used leaves go first. Each prompt token is keyed by what fixes its input:
its id, or, for an embedding that is not its id's (a spliced audio-encoder row), a key the caller derives from
that input (e.g. a digest of the audio and the row's index). After changing a model's weights in place call
`clear()`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch

from stepaudio.lm.cache import KVLayout, StaticKVCache
from stepaudio.lm.protocol import CausalLM

MIB = 1 << 20


@dataclass(frozen=True)
class PrefixCacheStats:
    """What the cache holds (`tokens`, `bytes` over `nodes`) and what it saved so far (`reused_tokens`)."""

    nodes: int
    tokens: int
    bytes: int
    max_bytes: int
    lookups: int
    hits: int
    reused_tokens: int


@dataclass(frozen=True)
class _ModelKey:
    """One model's state as it is now: the object, its KV shape, dtype and device (a moved model misses)."""

    model: int
    layout: KVLayout
    dtype: torch.dtype
    device: torch.device


class _Node:
    """A run of token keys after its parent's, with their K/V [layers, kv_heads, n, head_dim]."""

    __slots__ = ("children", "ids", "k", "parent", "used", "v")

    def __init__(self, ids: tuple[Hashable, ...], k: torch.Tensor | None, v: torch.Tensor | None,
                 parent: _Node | None, used: int) -> None:
        self.ids = ids
        self.k, self.v = k, v
        self.parent = parent
        self.children: dict[Hashable, _Node] = {}
        self.used = used

    @property
    def nbytes(self) -> int:
        if self.k is None or self.v is None:
            return 0
        return self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size()


# The stored nodes matched by a prompt, each with how many of its tokens match (the last may be partial).
_Match = list[tuple[_Node, int]]


class PrefixCache:
    """Prompt-prefix K/V of any `CausalLM`, bounded by `max_bytes`, safe to share between threads and models.

    `TokenStream(..., prefix_cache=cache)` calls `restore` before its prefill and `store` after it. A prompt is
    a sequence of token keys (its ids, unless embeddings replace them: see the module note).
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"a prefix cache needs a positive size, not {max_bytes} bytes")
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._roots: dict[_ModelKey, _Node] = {}
        self._bytes = 0
        self._clock = 0
        self._lookups = self._hits = self._reused = 0
        self._dead: list[_ModelKey] = []  # models collected since the last call (see `_forget`)

    def stats(self) -> PrefixCacheStats:
        with self._lock:
            self._purge()
            nodes = [n for root in self._roots.values() for n in _descendants(root)]
            return PrefixCacheStats(nodes=len(nodes), tokens=sum(len(n.ids) for n in nodes), bytes=self._bytes,
                                    max_bytes=self.max_bytes, lookups=self._lookups, hits=self._hits,
                                    reused_tokens=self._reused)

    def clear(self) -> None:
        with self._lock:
            self._roots.clear()
            self._bytes = 0

    def cached_length(self, model: CausalLM, prompt: Sequence[Hashable]) -> int:
        """How many leading tokens of `prompt` have stored K/V (the whole prompt may match)."""
        with self._lock:
            self._purge()
            root = self._roots.get(_key(model))
            return sum(n for _, n in _match(root, prompt)) if root is not None else 0

    def restore(self, model: CausalLM, cache: StaticKVCache, prompts: Sequence[Sequence[Hashable]],
                valid: torch.Tensor) -> list[int]:
        """Fill the first columns of an empty `cache` from stored prefixes; the tokens reused per row.

        `valid` [B, W] marks each row's prompt tokens (one contiguous run, left or right padded), as prefill
        lays them out. Every row resumes at one column: the least over rows of where its stored prefix ends,
        and at least one prompt token per row is left to prefill (its logits start the generation). The
        restored columns count as prefilled (`cache.length` is the column to prefill from).
        """
        if cache.length:
            raise ValueError("prefix K/V goes into an empty cache")
        starts = _starts(valid)
        with self._lock:
            self._purge()
            self._clock += 1
            root = self._roots.get(_key(model))
            matches = [_match(root, prompt) if root is not None else [] for prompt in prompts]
            usable = [min(sum(n for _, n in m), len(p) - 1) for m, p in zip(matches, prompts, strict=True)]
            column = min(s + u for s, u in zip(starts, usable, strict=True))
            reused = [max(0, column - s) for s in starts]
            self._lookups += len(prompts)
            self._hits += sum(1 for n in reused if n)
            self._reused += sum(reused)
            for row, (match, count) in enumerate(zip(matches, reused, strict=True)):
                if count:
                    _copy_in(cache, row, starts[row], match, count, self._clock)
        if column:
            step = cache.reserve(column)
            positions = (valid.long().cumsum(1) - 1).clamp(min=0)
            cache.record(step, positions[:, :column], valid[:, :column])
        return reused

    def store(self, model: CausalLM, cache: StaticKVCache, prompts: Sequence[Sequence[Hashable]],
              valid: torch.Tensor, end: int) -> None:
        """Keep the K/V of each row's prompt tokens in columns before `end` (all prefilled), then evict the least
        recently used leaves down to the size bound."""
        starts = _starts(valid)
        key = _key(model)
        with self._lock:
            self._purge()
            self._clock += 1
            root = self._roots.get(key)
            if root is None:
                root = self._roots[key] = _Node((), None, None, None, self._clock)
                weakref.finalize(model, self._forget, key)
            for row, (prompt, start) in enumerate(zip(prompts, starts, strict=True)):
                count = min(end, start + len(prompt)) - start
                if count > 0:
                    self._insert(root, tuple(prompt[:count]),
                                 cache.k[:, row, :, start : start + count], cache.v[:, row, :, start : start + count])
            self._evict()

    def _forget(self, key: _ModelKey) -> None:
        """The model is gone: its K/V can never be used again (and its `id` may be reused). Only noted here: a
        collection may run this inside one of our own locked calls, on this thread."""
        self._dead.append(key)

    def _purge(self) -> None:
        while self._dead:
            root = self._roots.pop(self._dead.pop(), None)
            if root is not None:
                self._bytes -= sum(n.nbytes for n in _descendants(root))

    def _insert(self, root: _Node, ids: tuple[Hashable, ...], k: torch.Tensor, v: torch.Tensor) -> None:
        node, at = root, 0
        node.used = self._clock
        while at < len(ids):
            child = node.children.get(ids[at])
            if child is None:
                leaf = _Node(ids[at:], k[:, :, at:].clone(), v[:, :, at:].clone(), node, self._clock)
                node.children[ids[at]] = leaf
                self._bytes += leaf.nbytes
                return
            common = _common_length(child.ids, ids, at)
            if common < len(child.ids):
                child = _split(child, common)
            child.used = self._clock
            node, at = child, at + common

    def _evict(self) -> None:
        while self._bytes > self.max_bytes:
            leaves = [n for root in self._roots.values() for n in _descendants(root) if not n.children]
            if not leaves:
                return
            oldest = min(leaves, key=lambda n: n.used)
            assert oldest.parent is not None
            del oldest.parent.children[oldest.ids[0]]
            self._bytes -= oldest.nbytes


def prefix_cache_of_size(megabytes: int) -> PrefixCache | None:
    """A cache of `megabytes` MiB, or None for 0 (reuse off)."""
    if megabytes < 0:
        raise ValueError(f"a prefix cache size is at least 0 MiB, not {megabytes}")
    return PrefixCache(megabytes * MIB) if megabytes else None


def _key(model: CausalLM) -> _ModelKey:
    return _ModelKey(id(model), model.kv_layout, model.dtype, torch.device(model.device))


def _starts(valid: torch.Tensor) -> list[int]:
    """The first real column of each row."""
    flags = valid.cpu()
    return [int(row.nonzero()[0]) if bool(row.any()) else flags.shape[1] for row in flags]


def _descendants(root: _Node) -> list[_Node]:
    out, todo = [], list(root.children.values())
    while todo:
        node = todo.pop()
        out.append(node)
        todo.extend(node.children.values())
    return out


def _common_length(stored: tuple[Hashable, ...], ids: Sequence[Hashable], at: int) -> int:
    n = min(len(stored), len(ids) - at)
    for i in range(n):
        if stored[i] != ids[at + i]:
            return i
    return n


def _match(root: _Node, prompt: Sequence[Hashable]) -> _Match:
    out: _Match = []
    node, at = root, 0
    while at < len(prompt):
        child = node.children.get(prompt[at])
        if child is None:
            break
        common = _common_length(child.ids, prompt, at)
        out.append((child, common))
        if common < len(child.ids):
            break
        node, at = child, at + common
    return out


def _copy_in(cache: StaticKVCache, row: int, start: int, match: _Match, count: int, clock: int) -> None:
    """Write the first `count` matched tokens' K/V into `row` of the cache from column `start`."""
    column = start
    for node, n in match:
        take = min(n, start + count - column)
        if take <= 0:
            break
        assert node.k is not None and node.v is not None
        cache.k[:, row, :, column : column + take] = node.k[:, :, :take]
        cache.v[:, row, :, column : column + take] = node.v[:, :, :take]
        node.used = clock
        column += take


def _split(node: _Node, at: int) -> _Node:
    """Cut `node` after `at` tokens: a new parent holds the first part (same bytes in all)."""
    assert node.parent is not None and node.k is not None and node.v is not None
    upper = _Node(node.ids[:at], node.k[:, :, :at].clone(), node.v[:, :, :at].clone(), node.parent, node.used)
    node.parent.children[node.ids[0]] = upper
    node.ids = node.ids[at:]
    node.k, node.v = node.k[:, :, at:].clone(), node.v[:, :, at:].clone()
    node.parent = upper
    upper.children[node.ids[0]] = node
    return upper
