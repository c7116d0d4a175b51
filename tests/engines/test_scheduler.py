"""The fair sentence scheduler: the least-served turn goes first, one sentence at a time per worker, a bound
per turn, and a cancelled sentence never starts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from stepaudio.engines.base import CancelToken
from stepaudio.engines.scheduler import FairScheduler, SchedulerOptions
from stepaudio.errors import StepAudioError


class Speaker:
    """Records the order sentences start in; each sentence blocks until the test releases it."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def speak(self, text: str) -> Iterator[str]:
        with self.lock:
            self.started.append(text)
            gate = self.release.setdefault(text, threading.Event())
        assert gate.wait(10), f"{text} was never released"
        yield text + ":a"
        yield text + ":b"

    def finish(self, text: str) -> None:
        with self.lock:
            self.release.setdefault(text, threading.Event()).set()


def _say(schedule: FairScheduler, speaker: Speaker, text: str, cancel: CancelToken | None,
         heard: list[str]) -> threading.Thread:
    thread = threading.Thread(target=lambda: heard.extend(schedule.run(lambda: speaker.speak(text), cancel)))
    thread.start()
    return thread


def _until(condition: object, what: str) -> None:
    """Wait (boundedly) for another thread to reach a state; the order of events is what tests check."""
    for _ in range(400):
        if callable(condition) and condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"never: {what}")


def test_a_turns_first_sentence_goes_ahead_of_another_turns_later_ones() -> None:
    schedule, speaker = FairScheduler(SchedulerOptions(workers=1, per_turn=3)), Speaker()
    a, b = CancelToken(), CancelToken()
    heard: list[str] = []
    threads = [_say(schedule, speaker, "a1", a, heard)]
    _until(lambda: speaker.started == ["a1"], "a1 starts")
    threads.append(_say(schedule, speaker, "a2", a, heard))
    _until(lambda: schedule.snapshot()["waiting"] == 1, "a2 waits")
    threads.append(_say(schedule, speaker, "b1", b, heard))  # b asks later, but has had nothing yet
    _until(lambda: schedule.snapshot()["waiting"] == 2, "b1 waits")
    speaker.finish("a1")
    _until(lambda: speaker.started == ["a1", "b1"], "b1 is next")
    assert schedule.snapshot() == {"running": 1, "waiting": 1}  # one worker: a2 still waits
    speaker.finish("b1")
    speaker.finish("a2")
    for thread in threads:
        thread.join(10)
    assert speaker.started == ["a1", "b1", "a2"]
    assert heard.index("a1:a") < heard.index("a1:b")  # every chunk of a sentence comes through, in order
    assert sorted(heard) == ["a1:a", "a1:b", "a2:a", "a2:b", "b1:a", "b1:b"]


def test_turns_take_turns_one_sentence_each() -> None:
    schedule, speaker = FairScheduler(SchedulerOptions(workers=1, per_turn=4)), Speaker()
    turns = {name: CancelToken() for name in "abc"}
    heard: list[str] = []
    threads = [_say(schedule, speaker, "a1", turns["a"], heard)]
    _until(lambda: speaker.started == ["a1"], "a1 starts")
    for queued, text in enumerate(("a2", "b1", "c1"), start=1):  # queue while a1 runs
        threads.append(_say(schedule, speaker, text, turns[text[0]], heard))
        _until(lambda n=queued: schedule.snapshot()["waiting"] == n, f"{text} waits")
    for text in ("a1", "b1", "c1", "a2"):
        speaker.finish(text)
        _until(lambda t=text: t in heard[-1] if heard else False, f"{text} done")
    for thread in threads:
        thread.join(10)
    assert speaker.started == ["a1", "b1", "c1", "a2"]


def test_two_workers_run_two_sentences_at_once() -> None:
    schedule, speaker = FairScheduler(SchedulerOptions(workers=2)), Speaker()
    heard: list[str] = []
    threads = [_say(schedule, speaker, name, CancelToken(), heard) for name in ("x", "y", "z")]
    _until(lambda: len(speaker.started) == 2, "two start")
    assert schedule.snapshot() == {"running": 2, "waiting": 1}
    for name in ("x", "y", "z"):
        speaker.finish(name)
    for thread in threads:
        thread.join(10)
    assert len(heard) == 6 and schedule.snapshot() == {"running": 0, "waiting": 0}


def test_a_turn_may_hold_only_its_bound_and_a_cancelled_sentence_never_starts() -> None:
    schedule, speaker = FairScheduler(SchedulerOptions(workers=1, per_turn=1)), Speaker()
    turn = CancelToken()
    heard: list[str] = []
    first = _say(schedule, speaker, "t1", turn, heard)
    _until(lambda: speaker.started == ["t1"], "t1 starts")
    second = _say(schedule, speaker, "t2", turn, heard)  # over the bound: blocks before it even queues
    time.sleep(0.1)
    assert schedule.snapshot() == {"running": 1, "waiting": 0}
    other = CancelToken()
    third = _say(schedule, speaker, "o1", other, heard)
    _until(lambda: schedule.snapshot()["waiting"] == 1, "o1 waits")
    other.cancel()
    third.join(10)
    assert schedule.snapshot() == {"running": 1, "waiting": 0}
    speaker.finish("t1")
    speaker.finish("t2")
    first.join(10)
    second.join(10)
    assert speaker.started == ["t1", "t2"] and "o1:a" not in heard


def test_calls_without_a_token_are_turns_of_their_own_and_options_are_checked() -> None:
    schedule = FairScheduler()
    assert list(schedule.run(lambda: iter([1, 2]))) == [1, 2]
    assert list(schedule.run(lambda: iter([3]))) == [3]
    assert schedule.snapshot() == {"running": 0, "waiting": 0}
    with pytest.raises(StepAudioError):
        FairScheduler(SchedulerOptions(workers=0))
