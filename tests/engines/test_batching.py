"""The batcher: bounded batches, each request's outcome (or error) its own."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from stepaudio.engines.batching import Coalescer


def test_the_batcher_bounds_its_batches_and_keeps_errors_to_their_request() -> None:
    def run(items: list[int]) -> Iterator[tuple[int, int | BaseException]]:
        for index, i in enumerate(items):
            yield index, ValueError(f"bad {i}") if i < 0 else i * 10

    batcher = Coalescer(run, 3, 0.5)
    with ThreadPoolExecutor(7) as pool:
        futures = [pool.submit(batcher.submit, i) for i in (1, 2, -3, 4, 5, 6, 7)]
        outcomes = [f.exception() or f.result() for f in futures]
    assert [o for o in outcomes if not isinstance(o, BaseException)] == [10, 20, 40, 50, 60, 70]
    assert str(outcomes[2]) == "bad -3"
    assert sum(size * count for size, count in batcher.sizes.items()) == 7 and max(batcher.sizes) <= 3
    lone = Coalescer(run, 1, 10.0)  # size 1: nothing to wait for
    assert lone.submit(2) == 20 and lone.sizes == {1: 1}
