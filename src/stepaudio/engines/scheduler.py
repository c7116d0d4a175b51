"""Fair sentence scheduling for a synthesizer shared by many conversations.

Left alone, every session's sentence is synthesized at once, all sharing the same cores: with eight sessions
each sentence takes eight times as long, so a session that just finished thinking waits for everyone's
sentences before its own first one is heard. `FairScheduler` runs at most `workers` sentences at a time
and picks the next one from the turn that has been served the fewest sentences so far (ties: the earliest
waiting), so a turn's first sentence goes ahead of other turns' later ones and the rest are taken in
turns, one sentence each: no turn waits for another's whole reply. A turn is named by its `CancelToken`
(one per realtime turn); a call without one is a turn of its own. A turn may have at most
`per_turn` sentences waiting or running; further ones block their caller until one is done.

Synthesis runs in the caller's thread: the scheduler only decides when it may start, and the sentence keeps
its place until its last chunk is yielded (a speaker that holds its own lock across chunks cannot then
deadlock with another sentence holding the place).
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from stepaudio.engines.base import CancelToken
from stepaudio.errors import StepAudioError

T = TypeVar("T")
_POLL_S = 0.05  # how often a waiting sentence looks at its cancel token


@dataclass(frozen=True)
class SchedulerOptions:
    """`workers`: sentences synthesized at once; `per_turn`: sentences one turn may have waiting or running."""

    workers: int = 1
    per_turn: int = 2


@dataclass
class _Ticket:
    turn: object
    order: int


class FairScheduler:
    """Admits sentences to a shared synthesizer: least-served turn first, then the earliest waiting."""

    def __init__(self, options: SchedulerOptions | None = None) -> None:
        self.options = options or SchedulerOptions()
        if self.options.workers < 1 or self.options.per_turn < 1:
            raise StepAudioError(f"a scheduler needs workers and per_turn >= 1, not {self.options}")
        self._cond = threading.Condition()
        self._order = itertools.count()
        self._waiting: list[_Ticket] = []
        self._running = 0
        # sentences served and held (waiting or running) per turn; a turn's counts go with its token
        self._served: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()
        self._held: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()

    def run(self, make: Callable[[], Iterator[T]], cancel: CancelToken | None = None) -> Iterator[T]:
        """The items of `make()`, started when this sentence's turn comes; nothing when cancelled while
        waiting."""
        turn: object = cancel if cancel is not None else _Turn()
        if not self._enter(turn, cancel):
            return
        try:
            yield from make()
        finally:
            self._leave(turn)

    def snapshot(self) -> dict[str, Any]:
        """Sentences running and waiting now (for logs and tests)."""
        with self._cond:
            return {"running": self._running, "waiting": len(self._waiting)}

    def _enter(self, turn: object, cancel: CancelToken | None) -> bool:
        with self._cond:
            while self._held.get(turn, 0) >= self.options.per_turn:  # the bound per turn
                if cancel is not None and cancel.cancelled:
                    return False
                self._cond.wait(_POLL_S)
            self._held[turn] = self._held.get(turn, 0) + 1
            ticket = _Ticket(turn, next(self._order))
            self._waiting.append(ticket)
            try:
                while not (self._running < self.options.workers and self._next() is ticket):
                    if cancel is not None and cancel.cancelled:
                        self._held[turn] -= 1
                        return False
                    self._cond.wait(_POLL_S)
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()
            if cancel is not None and cancel.cancelled:
                self._held[turn] -= 1
                return False
            self._running += 1
            return True

    def _leave(self, turn: object) -> None:
        with self._cond:
            self._running -= 1
            self._held[turn] -= 1
            self._served[turn] = self._served.get(turn, 0) + 1
            self._cond.notify_all()

    def _next(self) -> _Ticket | None:
        """The ticket to start next: its turn served least, then waiting longest."""
        return min(self._waiting, key=lambda t: (self._served.get(t.turn, 0), t.order), default=None)


class _Turn:
    """The turn of a call that named none (weakly referable, unlike a bare object)."""
