"""Group commit: concurrent callers' rows written by one statement (one commit), each caller
answered only when that statement has committed.

No timer: a lone caller is written at once; while a write is in flight, callers that arrive
queue up and go together in the next one, so batches grow with load and an idle service adds
no latency. A batch that fails on one caller's data is split until the bad row is alone, so
it fails alone; a database that is unavailable fails the whole batch (every caller retries).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from leadd.store.errors import is_transient

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 100
IN_FLIGHT = 2  # writes at once: one commits while the next one fills


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        write_many: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        write_one: Callable[[T], Awaitable[R]],
        *,
        max_batch: int = MAX_BATCH,
        in_flight: int = IN_FLIGHT,
    ) -> None:
        self._many, self._one = write_many, write_one
        self._max, self._in_flight = max_batch, in_flight
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._running = 0
        self.batches = 0  # writes of more than one row (tests, benchmarks)

    async def submit(self, item: T) -> R:
        """`item` written; returns what its write returned once it has committed."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._kick()
        # A caller that goes away (client disconnect) does not stop its row's write.
        return await asyncio.shield(future)

    def _kick(self) -> None:
        while self._queue and self._running < self._in_flight:
            batch, self._queue = self._queue[: self._max], self._queue[self._max :]
            self._running += 1
            task = asyncio.create_task(self._write(batch), name="group-commit")
            task.add_done_callback(self._done)

    def _done(self, _task: asyncio.Task[None]) -> None:
        self._running -= 1
        self._kick()

    async def _write(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            outcomes = await self._attempt([item for item, _ in batch])
        except BaseException:  # cancelled (shutdown): no caller waits forever
            for _, future in batch:
                future.cancel()
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
        try:
            results = await self._many(items)
        except Exception as exc:
            if is_transient(exc):
                return [(False, exc)] * len(items)
            half = len(items) // 2
            return await self._attempt(items[:half]) + await self._attempt(items[half:])
        self.batches += 1
        return [(True, r) for r in results]
