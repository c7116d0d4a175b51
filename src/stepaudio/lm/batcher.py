"""Continuous batching of decode steps: one loop owns a KV cache of B rows; requests join between steps, every
step decodes all active rows in one forward, and a row is reused as soon as its request stops.

Why: on CPU a decode step is bound by reading the weights, so B rows cost about one row; concurrent requests
(TTS sentences of several sessions, a chat turn beside them) then share each read instead of each paying it.

Each request is prefilled alone (a batch of one, after any prefix-cache hit) exactly as `TokenStream` does,
then its K/V is copied into a free row; each row's token is chosen from its own logits with its own sampling
config, history and generator. So a request gets the tokens it would get alone, up to float rounding of the
batched matmuls and of attention over a wider, masked key range (tests/lm/test_batcher.py measures it).

Slots: the cache keeps one write index for all rows (a decode step writes slot `length` of every row); each
slot also holds, per row, the token's position and whether it is real (`StaticKVCache.key_pos`, `key_valid`),
so rows of any length share it. A joining prompt is placed right-aligned to end at the write index; a leaving
row is marked invalid. When stale slots outnumber the longest row's (or the buffer is full) every row's live
slots move right-aligned to the front (`compact`), so attention reads at most about twice the longest row.

Active rows are kept packed at the front (a leaving row's place takes the last row's K/V), and a step runs over
those rows alone, through a view of the cache: one request costs one row, not B (where B rows cost more than
one, e.g. CPU GEMMs, or a CUDA graph that reads every row).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass

import torch

from stepaudio.errors import StepAudioError
from stepaudio.lm.cache import StaticKVCache
from stepaudio.lm.generate import DecodeFn, GeneratedStep, GenerationConfig, _eager_decode, _prefill, pad_prompts
from stepaudio.lm.prefix_cache import PrefixCache
from stepaudio.lm.protocol import CausalLM, new_cache
from stepaudio.lm.sampling import choose_tokens

MIN_SLOTS = 128  # the first allocation's floor: short requests do not regrow the buffer every few tokens


class BatchFullError(StepAudioError):
    """Every row is busy and the queue of waiting requests is at its bound."""


@dataclass(frozen=True)
class BatchConfig:
    """rows: requests decoded together (B); max_queued: requests waiting for a row before new ones are refused;
    max_request_len: a request's prompt plus new tokens (the per-row cache bound; longer ones cannot join)."""

    rows: int = 4
    max_queued: int = 32
    max_request_len: int = 8192

    def __post_init__(self) -> None:
        if self.rows < 1 or self.max_queued < 0 or self.max_request_len < 2:
            raise ValueError(f"invalid batch settings: {self}")


class _Request:
    """One generation as the loop sees it; `out` carries GeneratedStep items, then a stop reason or an error."""

    def __init__(self, prompt: list[int], config: GenerationConfig, cancel_event: threading.Event,
                 embeds: torch.Tensor | None, keys: Sequence[Hashable]) -> None:
        self.prompt, self.config, self.cancel_event = prompt, config, cancel_event
        self.embeds, self.keys = embeds, keys
        self.out: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.abandoned = False  # the consumer stopped iterating
        self.reused = 0
        self.tokens: list[int] = []  # every token chosen, as the loop chose them
        self.row = -1
        self.count = 0  # live cache slots of this row
        self.index = 0  # the next step's index
        self.logits: torch.Tensor | None = None  # [1, V]: the next token's
        self.history: torch.Tensor | None = None
        self.generator: torch.Generator | None = None

    @property
    def cancelled(self) -> bool:
        return self.abandoned or self.cancel_event.is_set()


class _RowsView(StaticKVCache):
    """The first `rows` rows of a batch cache, sharing its buffers and its write index (what a step runs on)."""

    def __init__(self, base: StaticKVCache, rows: int) -> None:  # no super().__init__: nothing is allocated
        self.base = base
        self.k, self.v = base.k[:, :rows], base.v[:, :rows]
        self.key_pos, self.key_valid = base.key_pos[:rows], base.key_valid[:rows]
        self.slot_ids = base.slot_ids

    @property
    def length(self) -> int:
        return self.base.length

    @length.setter
    def length(self, value: int) -> None:
        self.base.length = value


class DecodeBatch:
    """The synchronous core of the loop (tests drive it step by step to choose where requests join).

    `join` prefills a request and places it in a free row; `step` chooses every active row's next token, lets
    finished rows leave, and decodes the remaining rows in one forward. `decode_fn` binds a decode step to the
    batch cache as `TokenStream`'s does (`lm.accel.StaticDecoder.factory`: a CUDA graph, re-bound when the
    buffer grows). Not thread-safe: one loop owns it.
    """

    def __init__(self, model: CausalLM, rows: int, max_request_len: int, prefix_cache: PrefixCache | None = None,
                 decode_fn: Callable[[StaticKVCache], DecodeFn] | None = None):
        self.model, self.prefix_cache = model, prefix_cache
        self._decode_fn = decode_fn
        self._decoders: dict[int, DecodeFn] = {}  # per count of active rows, bound to a view of the cache
        self.max_request_len = max_request_len
        self.max_slots = 2 * max_request_len + MIN_SLOTS
        self.rows: list[_Request | None] = [None] * rows
        self.cache: StaticKVCache | None = None
        self.compactions = 0
        self.steps = 0  # decode forwards
        self.row_steps = 0  # rows decoded over them (row_steps / steps: the mean batch)

    @property
    def active(self) -> list[_Request]:
        return [r for r in self.rows if r is not None]

    @property
    def free_rows(self) -> int:
        return sum(1 for r in self.rows if r is None)

    def release(self) -> None:
        """Drop the cache buffer (idle); the next join allocates a fresh one."""
        if self.active:
            raise RuntimeError("rows are still decoding")
        self.cache = None
        self._decoders.clear()

    def join(self, req: _Request) -> None:
        """Prefill `req` alone and move its K/V into a free row, or finish it (cancelled, no tokens wanted)."""
        model, cfg = self.model, req.config
        row = self.rows.index(None)  # the first free row: active rows stay packed at the front
        if req.cancelled:
            req.out.put("cancelled")
            return
        device = model.device
        ids, valid = pad_prompts([req.prompt], model.pad_id)
        ids, valid = ids.to(device), valid.to(device)
        width = ids.shape[1]
        embeds = req.embeds.to(device=device, dtype=model.dtype)[None] if req.embeds is not None else None
        scratch = new_cache(model, 1, width)
        first = 0
        if self.prefix_cache is not None:
            req.reused = self.prefix_cache.restore(model, scratch, [req.keys], valid)[0]
            first = scratch.length
        positions = torch.arange(width, device=device)[None]
        last = torch.full((1,), width - 1, device=device, dtype=torch.long)
        logits, reached = _prefill(model, ids, embeds, positions, valid, scratch, last, cfg.prefill_chunk,
                                   req.cancel_event, first)
        if self.prefix_cache is not None and reached > first:
            self.prefix_cache.store(model, scratch, [req.keys], valid, reached)
        if logits is None or req.cancelled:
            req.out.put("cancelled")
            return
        if cfg.max_new_tokens <= 0:
            req.out.put("max_new_tokens")
            return
        self._place(row, scratch, width)
        req.row, req.count, req.logits = row, width, logits
        req.history = ids
        if cfg.seed is not None:
            req.generator = torch.Generator(device=device).manual_seed(cfg.seed)
        self.rows[row] = req

    def step(self) -> None:
        """One token for every active row (sent to its request), then one forward for the rows that go on."""
        going: list[_Request] = []
        for req in self.active:
            if req.cancelled:
                self._leave(req, "cancelled")
                continue
            assert req.logits is not None and req.history is not None
            cfg = req.config
            hist_valid = torch.ones_like(req.history, dtype=torch.bool)
            token = int(choose_tokens(req.logits, req.history, cfg.sampling, req.generator, hist_valid)[0])
            stop = token in cfg.stop_ids
            req.tokens.append(token)
            req.out.put(GeneratedStep(req.index, (token,), (stop,)))
            if stop:
                self._leave(req, "stop_id")
            elif req.index + 1 >= cfg.max_new_tokens:
                self._leave(req, "max_new_tokens")
            else:
                req.history = torch.cat([req.history, req.history.new_tensor([[token]])], dim=1)
                going.append(req)
        if not going:
            return
        self._make_room(1)
        cache = self.cache
        assert cache is not None
        batch = len(self.active)  # rows [0, batch): the going ones and, until they leave, none other
        ids = torch.full((batch, 1), self.model.pad_id, dtype=torch.long)
        positions = torch.zeros(batch, 1, dtype=torch.long)
        valid = torch.zeros(batch, 1, dtype=torch.bool)
        for req in going:
            ids[req.row, 0] = req.tokens[-1]
            positions[req.row, 0] = len(req.prompt) + req.index  # as TokenStream: token k goes in at L + k
            valid[req.row, 0] = True
        device = self.model.device
        decode = self._decoders.get(batch)
        if decode is None:
            view = _RowsView(cache, batch)
            decode = self._decoders[batch] = self._decode_fn(view) if self._decode_fn else _eager_decode(self.model,
                                                                                                         view)
        logits = decode(ids.to(device), positions.to(device), valid.to(device))
        self.steps += 1
        self.row_steps += len(going)
        for req in going:
            req.logits = logits[req.row : req.row + 1]
            req.count += 1
            req.index += 1

    def fail(self, error: BaseException) -> None:
        """Send `error` to every active request and free their rows."""
        for req in self.active:
            req.out.put(error)
            self.rows[req.row] = None
        if self.cache is not None:
            self.cache.reset()

    def _leave(self, req: _Request, reason: str) -> None:
        """Free `req`'s row; the last active row moves into it, so the active rows stay packed."""
        cache = self.cache
        assert cache is not None
        row, last = req.row, len(self.active) - 1
        moved = self.rows[last]
        if row != last and moved is not None:
            n = cache.length
            cache.k[:, row, :, :n] = cache.k[:, last, :, :n]
            cache.v[:, row, :, :n] = cache.v[:, last, :, :n]
            cache.key_pos[row, :n] = cache.key_pos[last, :n]
            cache.key_valid[row] = cache.key_valid[last]
            moved.row = row
            self.rows[row] = moved
        self.rows[last] = None
        cache.key_valid[last] = False
        req.logits = req.history = None
        req.out.put(reason)
        if not self.active:
            cache.reset()

    def _place(self, row: int, scratch: StaticKVCache, width: int) -> None:
        """Copy a prefilled prompt's K/V into `row`, ending at the write index (moved up when it is too short)."""
        if self.cache is None:
            self.cache = new_cache(self.model, len(self.rows), min(self.max_slots, max(MIN_SLOTS, 2 * width)))
            self._decoders.clear()
        cache = self.cache
        if cache.length < width:
            if width > cache.max_len:
                self._grow(width)
                cache = self.cache
            cache.length = width  # slots past the old index are invalid in every row
        end = cache.length
        start = end - width
        cache.k[:, row, :, start:end] = scratch.k[:, 0, :, :width]
        cache.v[:, row, :, start:end] = scratch.v[:, 0, :, :width]
        cache.key_pos[row, start:end] = scratch.key_pos[0, :width]
        cache.key_valid[row, start:end] = scratch.key_valid[0, :width]

    def _make_room(self, need: int) -> None:
        """Let `need` more slots be written: compact when the buffer is full or mostly stale, grow if still full."""
        cache = self.cache
        assert cache is not None
        live = max((r.count for r in self.active), default=0)
        if cache.length + need > cache.max_len or cache.length - live > max(live, MIN_SLOTS):
            self.compact()
        if cache.length + need > cache.max_len:
            self._grow(cache.length + need)

    def compact(self) -> None:
        """Move every row's live slots right-aligned to the front: the write index drops to the longest row."""
        cache = self.cache
        assert cache is not None
        rows = self.active
        live = max((r.count for r in rows), default=0)
        length = cache.length
        for req in rows:
            row = req.row
            slots = cache.key_valid[row, :length].nonzero()[:, 0]
            start = live - int(slots.numel())
            k = cache.k[:, row].index_select(2, slots)
            v = cache.v[:, row].index_select(2, slots)
            pos = cache.key_pos[row].index_select(0, slots)
            cache.key_valid[row] = False
            cache.k[:, row, :, start:live] = k
            cache.v[:, row, :, start:live] = v
            cache.key_pos[row, start:live] = pos
            cache.key_valid[row, start:live] = True
        cache.truncate(live)
        self.compactions += 1

    def _grow(self, need: int) -> None:
        old = self.cache
        assert old is not None
        if need > self.max_slots:
            raise ValueError(f"{need} cache slots needed, at most {self.max_slots} allowed")
        new = new_cache(self.model, len(self.rows), min(self.max_slots, max(need, 2 * old.max_len)))
        n = old.length
        new.k[:, :, :, :n] = old.k[:, :, :, :n]
        new.v[:, :, :, :n] = old.v[:, :, :, :n]
        new.key_pos[:, :n] = old.key_pos[:, :n]
        new.key_valid[:, :n] = old.key_valid[:, :n]
        new.length = n
        self.cache = new
        self._decoders.clear()


class BatchedStream:
    """One request's tokens, as `TokenStream` gives them for a batch of one: iterate to get one `GeneratedStep`
    per decode step (tokens and finished hold one entry); `cancel()` or the `cancel_event` stops it between
    steps; `stop_reason`, `generated` and `reused_tokens` as on `TokenStream`. The request joins the batch when
    iteration starts (BatchFullError if the queue is at its bound); leaving the loop early frees its row."""

    def __init__(self, batcher: Batcher, prompt: Sequence[int], config: GenerationConfig, *,
                 cancel_event: threading.Event | None = None, prompt_embeds: torch.Tensor | None = None,
                 prefix_keys: Sequence[Hashable] | None = None) -> None:
        if not prompt:
            raise ValueError("every prompt needs at least one token")
        if prefix_keys is not None and len(prefix_keys) != len(prompt):
            raise ValueError("prefix keys need one key per prompt token")
        if prompt_embeds is not None and batcher.prefix_cache is not None and prefix_keys is None:
            raise ValueError("prefix reuse of prompts given as embeddings needs prefix_keys")
        if prompt_embeds is not None and (prompt_embeds.ndim != 2 or prompt_embeds.shape[0] != len(prompt)):
            raise ValueError(f"prompt embeddings {list(prompt_embeds.shape)} do not match a prompt of "
                             f"{len(prompt)} ids")
        if not batcher.fits(len(prompt), config):
            raise ValueError(f"a prompt of {len(prompt)} and {config.max_new_tokens} new tokens exceed the "
                             f"batch's {batcher.config.max_request_len} per request")
        self.config = config
        self.prompts = [list(prompt)]
        self.cancel_event = cancel_event or threading.Event()
        self.stop_reason: str | None = None
        self.generated: list[list[int]] = [[]]
        self._batcher = batcher
        self._request = _Request(self.prompts[0], config, self.cancel_event, prompt_embeds,
                                 prefix_keys if prefix_keys is not None else self.prompts[0])
        self._started = False

    @property
    def reused_tokens(self) -> list[int]:
        return [self._request.reused]

    def cancel(self) -> None:
        self.cancel_event.set()

    def __iter__(self) -> Iterator[GeneratedStep]:
        if self._started:
            raise RuntimeError("a batched stream runs once")
        self._started = True
        request = self._request
        if self.cancel_event.is_set():
            self.stop_reason = "cancelled"
            return
        self._batcher.submit(request)
        try:
            while True:
                item = request.out.get()
                if isinstance(item, GeneratedStep):
                    self.generated[0].append(item.tokens[0])
                    yield item
                    if self.cancel_event.is_set():
                        self.stop_reason = "cancelled"
                        return
                elif isinstance(item, BaseException):
                    raise item
                else:
                    self.stop_reason = str(item)
                    return
        finally:
            request.abandoned = True  # a no-op once the loop has let it go


class Batcher:
    """The decode loop's thread and its queue: `stream(...)` gives a `BatchedStream`; the thread starts with the
    first request and stops (dropping the cache buffer) after `idle_s` without any."""

    def __init__(self, model: CausalLM, config: BatchConfig | None = None, *,
                 prefix_cache: PrefixCache | None = None, idle_s: float = 2.0,
                 decode_fn: Callable[[StaticKVCache], DecodeFn] | None = None) -> None:
        self.model = model
        self.config = config or BatchConfig()
        self.prefix_cache = prefix_cache
        self.idle_s = idle_s
        self.core = DecodeBatch(model, self.config.rows, self.config.max_request_len, prefix_cache, decode_fn)
        self._pending: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def waiting(self) -> int:
        """Requests queued for a row."""
        with self._cond:
            return len(self._pending)

    def fits(self, prompt_len: int, config: GenerationConfig) -> bool:
        """Whether a request of this size may join (longer ones are for an unbatched `TokenStream`)."""
        return prompt_len + max(config.max_new_tokens, 0) <= self.config.max_request_len

    def stream(self, prompt: Sequence[int], config: GenerationConfig, *,
               cancel_event: threading.Event | None = None, prompt_embeds: torch.Tensor | None = None,
               prefix_keys: Sequence[Hashable] | None = None) -> BatchedStream:
        return BatchedStream(self, prompt, config, cancel_event=cancel_event, prompt_embeds=prompt_embeds,
                             prefix_keys=prefix_keys)

    def submit(self, request: _Request) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            waiting = sum(1 for r in self._pending if not r.cancelled)
            if waiting >= self.core.free_rows + self.config.max_queued:
                raise BatchFullError(f"{self.config.rows} rows busy and {waiting} requests waiting")
            self._pending.append(request)
            self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lm-batcher", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Cancel everything and stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _admit(self) -> list[_Request] | None:
        """Requests to prefill now; None when the loop should end (closed, or idle past `idle_s`)."""
        core = self.core
        with self._cond:
            while True:
                for req in [r for r in self._pending if r.cancelled or self._closed]:
                    self._pending.remove(req)
                    req.out.put("cancelled")
                if self._closed:
                    for req in core.active:
                        req.abandoned = True  # step() lets them go as cancelled
                    if not core.active:
                        self._thread = None
                        return None
                    return []
                admit = [self._pending.popleft() for _ in range(min(core.free_rows, len(self._pending)))]
                if admit or core.active:
                    return admit
                if not self._cond.wait(self.idle_s) and not self._pending:
                    self._thread = None
                    core.release()
                    return None

    def _run(self) -> None:
        core = self.core
        try:
            with torch.inference_mode():
                while (admit := self._admit()) is not None:
                    for req in admit:
                        try:
                            core.join(req)
                        except Exception as error:  # this request's prompt failed; the others go on
                            req.out.put(error)
                    core.step()
        except BaseException as error:
            with self._cond:
                core.fail(error)
                for req in self._pending:
                    req.out.put(error)
                self._pending.clear()
                self._thread = None
                core.release()
