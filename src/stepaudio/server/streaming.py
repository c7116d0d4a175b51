"""Bridging the blocking engines to the event loop: a capability's requests gated, streamed, cancellable.

Engines are synchronous and not assumed thread-safe, so each capability (transcriber, chat, synthesizer)
is used by one request at a time unless its engine declares that it serves more at once (`Engine.concurrency`,
e.g. the lite chat model decodes `chat_parallel` replies in one batch), behind an async semaphore of that size
with a bounded queue that answers 503 when full.
A streamed generation runs its iterator step by step in a worker thread; when the client goes away the
iterator is closed and its `CancelToken` set, so the engine stops between steps.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
from anyio import to_thread
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from stepaudio.engines.base import CancelToken
from stepaudio.server.errors import ApiError, error_body, to_api_error

T = TypeVar("T")
log = logging.getLogger("stepaudio.server")
_DONE = object()


class Lease:
    """A held capability; `release` is idempotent so every exit path may call it."""

    def __init__(self, lock: anyio.Semaphore) -> None:
        self._lock: anyio.Semaphore | None = lock

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class CapabilityGate:
    """An async semaphore per engine capability, as wide as the requests it serves at once (`capacity`, 1 where
    not named), with a bounded number of waiters."""

    def __init__(self, max_queue: int, capacity: Mapping[str, int] | None = None) -> None:
        self.max_queue = max_queue
        self.capacity = dict(capacity or {})
        if any(size < 1 for size in self.capacity.values()):
            raise ValueError(f"a capability serves at least one request at once: {self.capacity}")
        self._locks: dict[str, anyio.Semaphore] = {}  # a semaphore has no owner task: any task may release
        self._waiting: dict[str, int] = {}

    async def acquire(self, capability: str) -> Lease:
        waiting = self._waiting.get(capability, 0)
        lock = self._locks.get(capability)
        if lock is None:
            lock = self._locks[capability] = anyio.Semaphore(self.capacity.get(capability, 1))
        if lock.value == 0 and waiting >= self.max_queue:
            raise ApiError(503, f"the {capability} is busy ({waiting} requests waiting); retry shortly",
                           code="server_busy", headers={"Retry-After": "1"})
        self._waiting[capability] = waiting + 1
        try:
            await lock.acquire()
        finally:
            self._waiting[capability] -= 1
        return Lease(lock)

    @asynccontextmanager
    async def hold(self, capability: str) -> AsyncIterator[None]:
        lease = await self.acquire(capability)
        try:
            yield
        finally:
            lease.release()


async def run_blocking(func: Callable[..., T], *args: Any) -> T:
    return await to_thread.run_sync(func, *args)


async def iterate_blocking(
    make: Callable[[], Iterator[T]], cancel: CancelToken | None = None
) -> AsyncIterator[T]:
    """Items of a blocking iterator, each produced in a worker thread; closing this closes (and cancels) it."""
    iterator = await to_thread.run_sync(make)
    finished = False
    try:
        while True:
            item = await to_thread.run_sync(next, iterator, _DONE)
            if item is _DONE:
                finished = True
                return
            yield item  # type: ignore[misc]
    finally:
        if cancel is not None and not finished:
            cancel.cancel()
        close = getattr(iterator, "close", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await to_thread.run_sync(close)


async def primed(items: AsyncIterator[T]) -> AsyncIterator[T]:
    """Run `items` up to its first item now, so that an error there becomes a JSON error response instead of
    a stream cut after its headers; the returned iterator yields that first item again."""
    try:
        first = await items.__anext__()
    except StopAsyncIteration:
        return _empty()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await items.aclose()  # type: ignore[attr-defined]
        raise
    return _chain(first, items)


async def _empty() -> AsyncIterator[Any]:
    return
    yield


async def _chain(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    try:
        yield first
        async for item in rest:
            yield item
    finally:
        with anyio.CancelScope(shield=True):
            await rest.aclose()  # type: ignore[attr-defined]


class ClosingStreamingResponse(StreamingResponse):
    """A streaming response that always closes its iterator and releases its lease, also when the client
    disconnects mid-stream."""

    def __init__(self, content: AsyncIterator[Any], *, lease: Lease | None = None, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.lease = lease

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def stream() -> None:
                    try:
                        await self.stream_response(send)
                    except OSError:
                        pass  # the client went away while we wrote
                    except Exception:  # headers are gone: all that is left is to end the stream
                        log.exception("a streamed response failed after it started")
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                await self.listen_for_disconnect(receive)  # uvicorn's send does not fail on a closed socket
                group.cancel_scope.cancel()
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            with anyio.CancelScope(shield=True):
                if close is not None:
                    await close()
            if self.lease is not None:
                self.lease.release()


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event: a `data:` line and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def with_error_event(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """SSE `events`, ended by an `{"error": ...}` event if generation fails after the stream has started."""
    try:
        async for event in events:
            yield event
    except Exception as exc:
        error = to_api_error(exc)
        log.error("a streamed generation failed: %s", exc, exc_info=error.status >= 500)
        yield sse(error_body(error.status, error.message, error.code, error.param))
    finally:
        with anyio.CancelScope(shield=True):
            await events.aclose()  # type: ignore[attr-defined]
