"""Where outcomes come from: the producer in this process, or `workers` processes each with its own engine.

Engines are not thread-safe (espeak-ng, llama.cpp and the LM caches keep per-instance state), so
parallel work uses processes, each building its producer from the picklable spec. Jobs of a cell the
engine cannot honour are skipped without synthesis once the first of them reports it. A worker whose
parent was killed notices and exits instead of lingering.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

from stepaudio.data.grid import GridCell
from stepaudio.data.manifest import DatasetError
from stepaudio.data.producer import Job, Outcome, Producer, ProducerSpec

_POLL_S = 1.0


def inline_outcomes(producer: Producer, jobs: Sequence[Job],
                    unsupported: MutableMapping[str, str]) -> Iterator[Outcome]:
    """Outcomes computed here, in job order."""
    for job in jobs:
        key = job.cell.key
        if key in unsupported:
            yield Outcome(job, unsupported=unsupported[key])
            continue
        outcome = producer.run(job)
        if outcome.unsupported is not None:
            unsupported.setdefault(key, outcome.unsupported)
        yield outcome


def process_outcomes(spec: ProducerSpec, cells: list[GridCell], jobs: Sequence[Job], workers: int,
                     unsupported: MutableMapping[str, str]) -> Iterator[Outcome]:
    """Outcomes from `workers` processes, in completion order; at most two jobs per worker in flight."""
    context = mp.get_context("spawn")
    job_queue: Any = context.Queue()
    result_queue: Any = context.Queue()
    procs = [context.Process(target=_worker_main, args=(spec, cells, job_queue, result_queue, os.getpid()),
                             daemon=True) for _ in range(workers)]
    for proc in procs:
        proc.start()
    pending = iter(jobs)
    in_flight = 0
    try:
        skipped: list[Outcome] = []
        in_flight += _feed(pending, job_queue, 2 * workers, unsupported, skipped)
        yield from skipped
        while in_flight:
            message = _receive(result_queue, procs)
            if isinstance(message, str):
                raise DatasetError(f"a generation worker failed: {message}")
            in_flight -= 1
            if message.unsupported is not None:
                unsupported.setdefault(message.job.cell.key, message.unsupported)
            yield message
            skipped = []
            in_flight += _feed(pending, job_queue, 1, unsupported, skipped)
            yield from skipped
    finally:
        for _ in procs:
            job_queue.put(None)
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()


def _feed(pending: Iterator[Job], job_queue: Any, count: int, unsupported: MutableMapping[str, str],
          skipped: list[Outcome]) -> int:
    """Queue up to `count` runnable jobs; jobs of unsupported cells go to `skipped` instead."""
    sent = 0
    for job in pending:
        if job.cell.key in unsupported:
            skipped.append(Outcome(job, unsupported=unsupported[job.cell.key]))
            continue
        job_queue.put(job)
        sent += 1
        if sent >= count:
            break
    return sent


def _receive(result_queue: Any, procs: list[Any]) -> Outcome | str:
    while True:
        try:
            message: Outcome | str = result_queue.get(timeout=_POLL_S)
            return message
        except queue.Empty:
            dead = [p for p in procs if not p.is_alive()]
            if dead:
                return f"worker process {dead[0].pid} exited with code {dead[0].exitcode}"


def _worker_main(spec: ProducerSpec, cells: list[GridCell], job_queue: Any, result_queue: Any,
                 parent: int) -> None:
    """Build a producer, then turn jobs into outcomes until told to stop or orphaned."""
    try:
        producer = spec.build()
        producer.check_voices(cells)
    except Exception as exc:  # reported to the parent, which raises it as a DatasetError
        result_queue.put(f"{type(exc).__name__}: {exc}")
        return
    while True:
        try:
            job = job_queue.get(timeout=_POLL_S)
        except queue.Empty:
            if os.getppid() != parent:
                return
            continue
        if job is None:
            return
        try:
            result_queue.put(producer.run(job))
        except Exception as exc:  # an unexpected failure stops the run; the parent names it
            result_queue.put(f"{type(exc).__name__}: {exc}")
            return
