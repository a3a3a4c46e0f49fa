"""Touch-point loop: every `interval`, or at once when woken by a new lead, it enriches new
leads, reconciles sends left in doubt by a crash, then claims due touch points and sends them
with bounded concurrency. A heartbeat extends the leases of rows still in flight, so a slow
(rate-limited) send is never mistaken for a dead daemon's. While Twilio's message list cannot
be read for sends in doubt, /readyz says so.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from contextlib import suppress
from typing import TYPE_CHECKING

import asyncpg

from leadd import metrics
from leadd.logs import get_logger
from leadd.outreach import Outreach

if TYPE_CHECKING:
    from leadd.daemon import Daemon

log = get_logger(__name__)

ENRICH_BATCH = 10
ENRICH_WORKERS = 4


async def run(daemon: Daemon) -> None:
    if await daemon.wait_db() is None:
        return
    engine = Outreach(daemon)
    interval = daemon.config.touchpoints.interval
    next_full = 0.0
    while not daemon.shutdown.is_set():
        daemon.wake_touchpoints.clear()
        # A wake by a new lead only needs enrich + send; reconciling expired leases and the
        # due gauge run on the interval (leases expire on that scale), so a burst of leads
        # does not pay for them once per lead.
        full = time.monotonic() >= next_full
        if full:
            next_full = time.monotonic() + interval
        await run_once(daemon, engine, full=full)
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


async def run_once(
    daemon: Daemon, engine: Outreach | None = None, *, full: bool = True
) -> Counter[str]:
    """One cycle: enrich, reconcile, then send until nothing is due (or shutdown).

    Sending is a pipeline, not batch-by-batch: up to `concurrency` sends are in flight, and
    a free slot is refilled by the next claim at once. A lead arriving meanwhile (the wake
    event) is enriched and claimed without waiting for slow sends already in flight, so one
    slow or rate-limited provider call never holds back a new lead's first message.
    """
    engine = engine or Outreach(daemon)
    db, tp = daemon.db, daemon.config.touchpoints
    assert db is not None
    counts: Counter[str] = Counter()
    await _enrich(daemon)
    if full:
        stale = await db.fetch("claim_stale_sending", engine.owner, tp.lease, tp.batch_size)
        for row in stale:
            counts["reconcile:" + await engine.reconcile(row)] += 1
        _report_lookups(daemon, engine, counts)
    await _send_due(daemon, engine, counts)
    if full:
        due = await db.fetchrow("count_due_touchpoints", metrics.OVERDUE_AFTER)
        metrics.set_touchpoints_due(due)
    if counts:
        log.info("touchpoints.cycle", **dict(counts))
    return counts


def _report_lookups(daemon: Daemon, engine: Outreach, counts: Counter[str]) -> None:
    """/readyz names a Twilio message list that could not be read in this pass while sends
    wait on it; a pass without such failures (nothing left in doubt) clears it."""
    if counts["reconcile:lookup_failed"] or counts["reconcile:unknown"]:
        daemon.provider_problems["twilio"] = engine.lookup_problem
    else:
        daemon.provider_problems.pop("twilio", None)


async def _enrich(daemon: Daemon) -> None:
    """Enrich every lead that is due. A burst of new leads can exceed one call's limit, and
    each call works through its leads one by one, so a few calls run side by side (their
    claims are disjoint: SKIP LOCKED)."""
    # One claimer first: a lone new lead costs one claim, not ENRICH_WORKERS of them.
    if await daemon.enrich(ENRICH_BATCH) < ENRICH_BATCH:
        return
    while not daemon.shutdown.is_set():
        done = await asyncio.gather(*(daemon.enrich(ENRICH_BATCH) for _ in range(ENRICH_WORKERS)))
        if max(done) < ENRICH_BATCH:
            return


async def _send_due(daemon: Daemon, engine: Outreach, counts: Counter[str]) -> None:
    db, tp = daemon.db, daemon.config.touchpoints
    assert db is not None
    in_flight: dict[asyncio.Task[None], int] = {}  # task -> touch point id
    drained = False  # the last claim found fewer rows than it asked for

    async def one(row: asyncpg.Record) -> None:
        try:
            if daemon.shutdown.is_set():
                # Shutting down: hand unstarted rows back instead of starting new sends.
                await db.execute("defer_touchpoint", row["id"], row["due_at"], None, engine.owner)
                counts["released"] += 1
                return
            counts[await engine.process(row)] += 1
        except Exception:
            # One bad row must not stop the loop; its lease expires and it is reconciled.
            counts["error"] += 1
            log.exception("touchpoint.error", touch_point_id=row["id"])

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(tp.lease / 3)
            if in_flight:
                with suppress(asyncpg.PostgresError, OSError):
                    await db.execute(
                        "extend_leases", engine.owner, tp.lease, list(in_flight.values())
                    )

    beat = asyncio.create_task(heartbeat())
    try:
        while True:
            free = tp.concurrency - len(in_flight)
            if not drained and free > 0 and not daemon.shutdown.is_set():
                limit = min(tp.batch_size, free)
                rows = await db.fetch("claim_touchpoints", engine.owner, tp.lease, limit)
                for row in rows:
                    in_flight[asyncio.create_task(one(row))] = row["id"]
                drained = len(rows) < limit
                if not drained and len(rows) < free:
                    continue  # more are due and there is room: claim again now
            if not in_flight:
                return
            woken = asyncio.create_task(daemon.wake_touchpoints.wait())
            try:
                done, _ = await asyncio.wait(
                    {*in_flight, woken}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                woken.cancel()
            for task in done:
                if task is not woken:
                    in_flight.pop(task)  # type: ignore[arg-type]
            daemon.supervisor.beat("touchpoints")  # a long busy cycle is still progress
            if daemon.wake_touchpoints.is_set() and not daemon.shutdown.is_set():
                # A new lead: enrich it now and look for due rows again.
                daemon.wake_touchpoints.clear()
                await _enrich(daemon)
                drained = False
    except asyncio.CancelledError:
        for task in in_flight:  # forced shutdown: do not wait out slow provider calls
            task.cancel()
        raise
    finally:
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
        beat.cancel()
        with suppress(asyncio.CancelledError):
            await beat
