"""The group-commit coordinator (store/batch.py) without a database: writers that the tests
hold on events, so what is asserted is the order of things, never their timing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from leadd.store.batch import GroupCommit, WritesClosed
from leadd.store.errors import is_transient


class Writer:
    """write_many/write_one that record each statement and wait for `release`."""

    def __init__(self, refuse: int | None = None) -> None:
        self.statements: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()
        self.refuse = refuse  # the item the "database" refuses, in any statement holding it

    async def many(self, items: Sequence[int]) -> list[int]:
        return await self._write(list(items))

    async def one(self, item: int) -> int:
        return (await self._write([item]))[0]

    async def _write(self, items: list[int]) -> list[int]:
        self.statements.append(items)
        self.started.set()
        await self.release.wait()
        if self.refuse in items:
            raise ValueError("the database refused a value")
        return [i * 10 for i in items]


async def test_callers_of_one_turn_share_one_statement_and_wait_for_it() -> None:
    """Fifty callers submitted together are one statement; none is answered while it runs."""
    w = Writer()
    w.release.clear()
    batches = GroupCommit(w.many, w.one)
    calls = [asyncio.ensure_future(batches.submit(i)) for i in range(50)]
    await w.started.wait()
    assert w.statements == [list(range(50))]
    assert not any(c.done() for c in calls)  # the statement has not returned: no answer
    w.release.set()
    assert await asyncio.gather(*calls) == [i * 10 for i in range(50)]
    assert batches.batches == 1


async def test_callers_arriving_during_a_write_go_together_in_the_next() -> None:
    """At most `in_flight` writes at once; whoever arrives meanwhile waits for a free one and
    shares it, whatever its number (up to `max_batch`)."""
    w = Writer()
    w.release.clear()
    batches = GroupCommit(w.many, w.one, in_flight=1, max_batch=8)
    first = asyncio.ensure_future(batches.submit(0))
    await w.started.wait()
    later = [asyncio.ensure_future(batches.submit(i)) for i in range(1, 12)]
    await asyncio.sleep(0)  # give a (wrong) second writer every chance to start
    assert w.statements == [[0]]
    w.release.set()
    assert await asyncio.gather(first, *later) == [i * 10 for i in range(12)]
    assert w.statements == [[0], list(range(1, 9)), list(range(9, 12))]


async def test_a_refused_row_fails_alone_and_its_neighbours_are_written() -> None:
    w = Writer(refuse=13)
    batches = GroupCommit(w.many, w.one)
    results = await asyncio.gather(*(batches.submit(i) for i in range(40)), return_exceptions=True)
    assert isinstance(results[13], ValueError)
    assert [r for i, r in enumerate(results) if i != 13] == [i * 10 for i in range(40) if i != 13]
    # Halves, not one statement per row: the refused row ends up alone.
    assert [13] in w.statements and len(w.statements) < 20


async def test_an_unavailable_database_fails_every_caller_of_the_batch() -> None:
    async def down(items: Sequence[int]) -> list[int]:
        raise ConnectionResetError("connection reset")

    async def never(item: int) -> int:
        raise AssertionError("a transient failure is not retried row by row")

    batches = GroupCommit(down, never)
    results = await asyncio.gather(*(batches.submit(i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, ConnectionResetError) for r in results)


async def test_close_writes_what_is_queued_and_then_refuses_new_callers() -> None:
    """Shutdown never leaves a caller waiting: what is queued is written before close()
    returns, and a caller after it gets a retryable error (the webhook's 503)."""
    w = Writer()
    w.release.clear()
    batches = GroupCommit(w.many, w.one, in_flight=1)
    first = asyncio.ensure_future(batches.submit(1))
    await w.started.wait()
    queued = [asyncio.ensure_future(batches.submit(i)) for i in (2, 3)]
    closing = asyncio.ensure_future(batches.close())
    await asyncio.sleep(0)
    assert not closing.done()  # a write is in flight and two callers are queued
    w.release.set()
    await closing
    assert [c.result() for c in (first, *queued)] == [10, 20, 30]
    with pytest.raises(WritesClosed) as refused:
        await batches.submit(4)
    assert is_transient(refused.value)


async def test_a_write_cancelled_under_way_fails_its_callers_with_a_retryable_error() -> None:
    """The event loop going away mid-statement (a forced shutdown): the callers are failed
    as by an unavailable database, not left waiting and not told their row is stored."""
    w = Writer()
    w.release.clear()
    batches = GroupCommit(w.many, w.one)
    calls = [asyncio.ensure_future(batches.submit(i)) for i in range(3)]
    await w.started.wait()
    for task in asyncio.all_tasks():
        if task.get_name() == "batch":
            task.cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, WritesClosed) and is_transient(r) for r in results)


async def test_a_caller_that_goes_away_does_not_stop_its_neighbours_write() -> None:
    w = Writer()
    w.release.clear()
    batches = GroupCommit(w.many, w.one)
    calls = [asyncio.ensure_future(batches.submit(i)) for i in range(3)]
    await w.started.wait()
    calls[1].cancel()  # a client that disconnected
    w.release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[0] == 0 and results[2] == 20
    assert isinstance(results[1], asyncio.CancelledError)
    assert w.statements == [[0, 1, 2]]
