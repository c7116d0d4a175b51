"""Requests that arrive together, run as one batch: for models whose batched call costs less than its rows one by
one (Whisper's decoder on CTranslate2), without making a lone request wait more than a few milliseconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any


class _Slot:
    """A request waiting in a `Coalescer`, and then its outcome."""

    def __init__(self, item: Any) -> None:
        self.item = item
        self.done = False
        self.outcome: Any = None


class Coalescer:
    """Runs requests that arrive together as one batch: the first one waiting leads, waits up to `wait_s` for
    others to join (or until `size` are there), then runs them on a thread of the batch's own while later
    requests queue for the next batch. `run` yields each request's index and outcome (an exception for a request
    that failed) as soon as it has it, and that request returns then, not at the end of the batch."""

    def __init__(self, run: Callable[[list[Any]], Iterator[tuple[int, Any]]], size: int, wait_s: float) -> None:
        self._run = run
        self._size = max(1, size)
        self._wait_s = wait_s
        self._pending: list[_Slot] = []
        self._running = False
        self._changed = threading.Condition()
        self.sizes: dict[int, int] = {}  # how many batches of each size ran (tests and benches read it)

    def submit(self, item: Any) -> Any:
        slot = _Slot(item)
        with self._changed:
            self._pending.append(slot)
            self._changed.notify_all()
            while not slot.done:
                if not self._running and self._pending and self._pending[0] is slot:
                    self._running = True
                    deadline = time.monotonic() + self._wait_s
                    while len(self._pending) < self._size and (left := deadline - time.monotonic()) > 0:
                        self._changed.wait(left)
                    batch, self._pending = self._pending[:self._size], self._pending[self._size:]
                    self.sizes[len(batch)] = self.sizes.get(len(batch), 0) + 1
                    threading.Thread(target=self._batch, args=(batch,), name="asr-batch", daemon=True).start()
                self._changed.wait()
        if isinstance(slot.outcome, BaseException):
            raise slot.outcome
        return slot.outcome

    def _batch(self, batch: list[_Slot]) -> None:
        failure: BaseException = RuntimeError("the batch ended without this request's result")
        try:
            for index, outcome in self._run([member.item for member in batch]):
                with self._changed:
                    batch[index].outcome, batch[index].done = outcome, True
                    self._changed.notify_all()
        except BaseException as exc:  # reported to each request still waiting
            failure = exc
        finally:
            with self._changed:
                for member in batch:
                    if not member.done:
                        member.outcome, member.done = failure, True
                self._running = False
                self._changed.notify_all()
