"""The periodic loops (poll, enrichment, touch points) and what they share: waiting for the
next tick, a wake-up or shutdown, and riding out a database outage without crashing."""

from __future__ import annotations

import asyncio

from leadd.backoff import Backoff
from leadd.errors import describe_error
from leadd.logs import get_logger

log = get_logger(__name__)

# A cycle that found the database unavailable waits this long (by consecutive failures)
# before the next try; a wake-up or shutdown still ends the wait at once.
DB_RETRY = Backoff(base=0.5, cap=10.0, jitter=0.2)


async def idle(shutdown: asyncio.Event, wake: asyncio.Event | None, timeout: float) -> None:
    """Until `timeout` seconds pass, `wake` is set, or `shutdown` is set."""
    events = [shutdown] if wake is None else [shutdown, wake]
    if any(e.is_set() for e in events):
        return
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


async def wait_out_database(
    loop: str, exc: BaseException, shutdown: asyncio.Event, failures: int
) -> int:
    """A cycle found the database down for everyone: log it, wait (backoff by consecutive
    `failures`, or until shutdown) and return the new count. The loop goes on; no crash."""
    log.warning(f"{loop}.database_unavailable", error=describe_error(exc))
    await idle(shutdown, None, DB_RETRY.delay(failures))
    return failures + 1
