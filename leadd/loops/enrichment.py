"""Enrichment loop (issue 11: its own lane): leads are enriched here, side by side, and never
in the send loop, so a slow or rate-limited Shopmonkey never delays a send that is due.

Woken by a new lead (`wake_enrichment`), otherwise every `touchpoints.interval`. Each claim
takes one stage of each lead: customers first (an acknowledgement waits for them), then
vehicle and services (leadd.intake.enrichment). Up to `concurrency(config)` stages are in
flight; a free slot is refilled by the next claim at once. A save that releases touch points
wakes the send loop. A database outage is waited out with backoff, not a crash.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from leadd import metrics
from leadd.config import Config
from leadd.intake import enrichment
from leadd.logs import get_logger
from leadd.loops import idle, wait_out_database
from leadd.runtime import Runtime
from leadd.store import DB_ERRORS

log = get_logger(__name__)

CLAIM_BATCH = 20
MAX_IN_FLIGHT = 64


def concurrency(cfg: Config) -> int:
    """Stages in flight: enough to keep the Shopmonkey budget busy; few enough that every
    claimed stage (at most two calls) gets its calls within its lease, so another claim
    never takes a lead that is still being worked on; and at most half the pool, so the send
    loop and intake always find a connection."""
    fits_lease = int(cfg.shopmonkey.requests_per_second * enrichment.LEASE_SECONDS / 3)
    return max(2, min(MAX_IN_FLIGHT, fits_lease, cfg.database.pool_max // 2))


def _no_beat() -> None:
    """Without a supervisor: nobody to tell."""


async def run(
    rt: Runtime,
    *,
    shutdown: asyncio.Event,
    wake_event: asyncio.Event,
    beat: Callable[[], None],
) -> None:
    interval = rt.config.touchpoints.interval
    failures = 0
    while not shutdown.is_set():
        wake_event.clear()
        try:
            await run_once(rt, shutdown=shutdown, wake_event=wake_event, beat=beat)
            failures = 0
        except DB_ERRORS as exc:
            # Alive, waiting for the database (/readyz says so): the watchdog must not have
            # systemd restart a daemon that a restart cannot help.
            beat()
            failures = await wait_out_database("enrichment", exc, shutdown, failures)
            continue
        beat()
        metrics.LOOP_LAST_RUN.labels("enrichment").set(time.time())
        await idle(shutdown, wake_event, interval)


async def run_once(
    rt: Runtime,
    *,
    shutdown: asyncio.Event | None = None,
    wake_event: asyncio.Event | None = None,
    beat: Callable[[], None] = _no_beat,
    in_flight_max: int | None = None,
) -> int:
    """Enrich until no stage is due (or shutdown, which abandons stages in flight); returns
    how many stages ran. Raises only when a claim fails (the database is down); stages
    already running finish first."""
    limit = in_flight_max or concurrency(rt.config)
    shutdown = shutdown or asyncio.Event()
    wake_event = wake_event or asyncio.Event()
    running: set[asyncio.Task[str | None]] = set()
    ran = 0
    drained = False  # the last claim found fewer leads than it asked for
    try:
        while True:
            free = limit - len(running)
            if not drained and free > 0 and not shutdown.is_set():
                ask = min(free, CLAIM_BATCH)
                jobs = await enrichment.claim(rt, ask)
                for job in jobs:
                    running.add(asyncio.create_task(enrichment.enrich(rt, job)))
                drained = len(jobs) < ask
                if not drained and len(running) < limit:
                    continue
            if not running:
                return ran
            woken = asyncio.create_task(wake_event.wait())
            stop = asyncio.create_task(shutdown.wait())
            try:
                done, _ = await asyncio.wait(
                    {*running, woken, stop}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                woken.cancel()
                stop.cancel()
            if shutdown.is_set():
                # A stage is safe to abandon (its lease runs out and it is claimed again);
                # shutdown need not wait out a hanging Shopmonkey call.
                for task in running:
                    task.cancel()
                return ran
            for finished in running & done:
                running.discard(finished)
                ran += 1
                if finished.result() == "contact":  # its details are due now
                    drained = False
            beat()
            if wake_event.is_set():
                wake_event.clear()
                drained = False
    finally:
        if running:
            await asyncio.gather(*running, return_exceptions=True)
