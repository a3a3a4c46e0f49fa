"""Touch-point loop: every `interval`, or at once when woken by a new lead, it enriches new
leads, reconciles sends left in doubt by a crash, then claims due touch points and sends them
with bounded concurrency. A heartbeat extends the leases of rows still in flight, so a slow
(rate-limited) send is never mistaken for a dead daemon's.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from contextlib import suppress
from typing import TYPE_CHECKING

import asyncpg

from leadd import enrichment, metrics
from leadd.logs import get_logger
from leadd.outreach import Outreach

if TYPE_CHECKING:
    from leadd.daemon import Daemon

log = get_logger(__name__)


async def run(daemon: Daemon) -> None:
    if await daemon.wait_db() is None:
        return
    engine = Outreach(daemon)
    interval = daemon.config.touchpoints.interval
    while not daemon.shutdown.is_set():
        daemon.wake_touchpoints.clear()
        await run_once(daemon, engine)
        daemon.supervisor.beat("touchpoints")
        metrics.LOOP_LAST_RUN.labels("touchpoints").set(time.time())
        if daemon.wake_touchpoints.is_set():
            continue
        wake = asyncio.create_task(daemon.wake_touchpoints.wait())
        stop = asyncio.create_task(daemon.shutdown.wait())
        try:
            await asyncio.wait({wake, stop}, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
            stop.cancel()


async def run_once(daemon: Daemon, engine: Outreach | None = None) -> Counter[str]:
    """One cycle: enrich, reconcile, then send until nothing is due (or shutdown)."""
    engine = engine or Outreach(daemon)
    db, tp = daemon.db, daemon.config.touchpoints
    assert db is not None
    counts: Counter[str] = Counter()
    await enrichment.enrich_due(daemon)
    for row in await db.fetch("claim_stale_sending", daemon.instance_id, tp.lease, tp.batch_size):
        counts["reconcile:" + await engine.reconcile(row)] += 1
    while not daemon.shutdown.is_set():
        rows = await db.fetch("claim_touchpoints", daemon.instance_id, tp.lease, tp.batch_size)
        if not rows:
            break
        counts.update(await _send_batch(daemon, engine, rows))
        if len(rows) < tp.batch_size:
            break
    due = await db.fetchrow("count_due_touchpoints")
    metrics.TOUCHPOINTS_DUE.set(due["n"] if due else 0)
    if counts:
        log.info("touchpoints.cycle", **dict(counts))
    return counts


async def _send_batch(daemon: Daemon, engine: Outreach, rows: list[asyncpg.Record]) -> Counter[str]:
    db, tp = daemon.db, daemon.config.touchpoints
    assert db is not None
    in_flight = {r["id"] for r in rows}
    sem = asyncio.Semaphore(tp.concurrency)
    counts: Counter[str] = Counter()

    async def one(row: asyncpg.Record) -> None:
        async with sem:
            try:
                if daemon.shutdown.is_set():
                    # Shutting down: hand unstarted rows back instead of starting new sends.
                    await db.execute("reschedule_touchpoint", row["id"], row["due_at"], None)
                    counts["released"] += 1
                    return
                counts[await engine.process(row)] += 1
            except Exception:
                # One bad row must not stop the batch; its lease expires and it is reconciled.
                counts["error"] += 1
                log.exception("touchpoint.error", touch_point_id=row["id"])
            finally:
                in_flight.discard(row["id"])

    async def heartbeat() -> None:
        while in_flight:
            await asyncio.sleep(tp.lease / 3)
            with suppress(asyncpg.PostgresError, OSError):
                await db.execute("extend_leases", daemon.instance_id, tp.lease, list(in_flight))

    beat = asyncio.create_task(heartbeat())
    try:
        await asyncio.gather(*(one(r) for r in rows))
    finally:
        beat.cancel()
        with suppress(asyncio.CancelledError):
            await beat
    return counts
