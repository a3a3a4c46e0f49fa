"""The periodic loops (poll, enrichment, touch points) and what they share: waiting for the
next tick, a wake-up or shutdown, and riding out a database outage without crashing."""

from __future__ import annotations

import asyncio

from leadd.backoff import Backoff

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
