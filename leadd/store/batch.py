"""Group commit: concurrent callers' rows written by one statement (one commit), each caller
answered only when that statement has committed.

No timer: a lone caller is written at once; while a write is in flight, callers that arrive
queue up and go together in the next one, so batches grow with load and an idle service adds
no latency (the window is the time the write in flight takes; `max_batch` bounds a batch,
`in_flight` the writes at once). A batch takes what is queued when its task runs, so callers
of one turn of the event loop share it. A batch that fails on one caller's data is split until
the bad row is alone, so it fails alone; a database that is unavailable fails the whole batch
(every caller retries).

`close()` writes what is queued, waits for the writes in flight and refuses later callers with
`WritesClosed`; a write cancelled under way fails its callers the same way. An OSError, so a
caller sees what an unavailable database would give it (a webhook answers 503): no caller is
ever left waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from leadd import metrics
from leadd.errors import describe_error
from leadd.logs import get_logger
from leadd.store.errors import is_transient

log = get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 100
IN_FLIGHT = 2  # writes at once: one commits while the next one fills


class WritesClosed(ConnectionError):
    """The store is closing, or the write was cancelled: not written (retry later)."""


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        write_many: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        write_one: Callable[[T], Awaitable[R]],
        *,
        name: str = "batch",
        max_batch: int = MAX_BATCH,
        in_flight: int = IN_FLIGHT,
    ) -> None:
        if max_batch < 1 or in_flight < 1:
            raise ValueError("max_batch and in_flight must be at least 1")
        self._many, self._one = write_many, write_one
        self._name, self._max, self._in_flight = name, max_batch, in_flight
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._running = 0
        self._starting = False  # a write's task is started and has not taken its batch yet
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.batches = 0  # writes of more than one row (tests, benchmarks)
        self.waiting = 0  # callers not answered yet, queued or in a write (tests)

    async def submit(self, item: T) -> R:
        """`item` written; returns what its write returned once it has committed."""
        if self._closed:
            raise WritesClosed(f"{self._name}: the store is closing")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._kick()
        self.waiting += 1
        try:
            # A caller that goes away (cancelled) cancels only its future: the write goes on
            # and skips answering it. (Not asyncio.shield: that costs a second future and a
            # loop look-up per caller on the hottest path.)
            return await future
        finally:
            self.waiting -= 1

    async def close(self) -> None:
        """Write what is queued, wait for every write in flight; refuse callers from now on."""
        self._closed = True
        self._kick()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _kick(self) -> None:
        if self._queue and not self._starting and self._running < self._in_flight:
            self._running += 1
            self._starting = True
            task = asyncio.get_running_loop().create_task(self._write(), name=self._name)
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._running -= 1
        self._kick()

    async def _write(self) -> None:
        batch, self._queue = self._queue[: self._max], self._queue[self._max :]
        self._starting = False
        self._kick()  # more than a batch queued: the next write may start beside this one
        try:
            outcomes = await self._attempt([item for item, _ in batch])
        except BaseException:  # cancelled (shutdown): no caller waits forever
            for _, future in batch:
                if not future.done():
                    future.set_exception(WritesClosed(f"{self._name}: the write was cancelled"))
            raise
        for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
            if not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    async def _attempt(self, items: list[T]) -> list[tuple[bool, Any]]:
        """(True, result) or (False, exception) per item. A batch that fails on data is split
        in halves until the bad row is alone: a few extra statements, not one per row."""
        if len(items) == 1:
            try:
                return [(True, await self._one(items[0]))]
            except Exception as exc:
                return [(False, exc)]
        metrics.STORE_BATCH_ROWS.labels(self._name).observe(len(items))
        try:
            results = await self._many(items)
        except Exception as exc:
            if is_transient(exc):
                return [(False, exc)] * len(items)
            metrics.STORE_BATCH_SPLITS.labels(self._name).inc()
            # Words, not the message: it may quote the refused value (a customer's name).
            log.warning(
                "store.batch_split", batch=self._name, rows=len(items), error=describe_error(exc)
            )
            half = len(items) // 2
            return await self._attempt(items[:half]) + await self._attempt(items[half:])
        self.batches += 1
        return [(True, r) for r in results]
