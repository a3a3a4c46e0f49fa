"""Shopmonkey poll loop: every poll_interval, fetch orders updated since a stored cursor and
feed them through the same ingestion as the webhook, catching whatever the webhook missed.

One poller per tenant at a time, even with two daemons on one database: a lease row with an
expiry. Each cycle is a `job_executions` row. The cursor only moves forward, and each cycle
re-reads a small overlap so an order committed with an older updatedDate is not skipped.

A polled order passes the webhook's validation (`intake.receive_polled`). One that fails it,
or that the database refuses to store, is that order's problem: recorded (`rejected_orders`,
the log, `leadd_orders_rejected_total`, the cycle's counts) and skipped, and the cursor moves
past it. Only the database being unavailable for everyone stops a cycle before the cursor
moves. Each tick also forgets webhook deliveries whose signatures have expired.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from leadd import metrics
from leadd.errors import describe_error
from leadd.intake import receive_polled
from leadd.intake.events import parse_time
from leadd.logs import get_logger
from leadd.providers import shopmonkey as sm
from leadd.runtime import Runtime
from leadd.store import DB_ERRORS

log = get_logger(__name__)

JOB = "shopmonkey.poll"
LEASE = "shopmonkey.poll"
CURSOR = "shopmonkey.orders.updatedDate"
OVERLAP = dt.timedelta(minutes=2)
RESULTS = ("created", "updated", "duplicate", "stale", "ignored", "invalid", "failed")
# A cycle that fails on these leaves its cursor where it was: the next one fetches again.
CYCLE_ERRORS: tuple[type[BaseException], ...] = (sm.ShopmonkeyError, *DB_ERRORS)


async def run(rt: Runtime, *, shutdown: asyncio.Event, beat: Callable[[], None]) -> None:
    """Poll every `shopmonkey.poll_interval` until `shutdown`; `beat()` after every tick."""
    interval = rt.config.shopmonkey.poll_interval
    next_tick = time.monotonic()
    while not shutdown.is_set():
        started = time.monotonic()
        try:
            if await run_once(rt) is not None:  # a cycle ran (not disabled, not a follower)
                metrics.POLL_DURATION.observe(time.monotonic() - started)
        except DB_ERRORS as exc:
            # The lease or the job row could not be written: the database is down for
            # everyone. The cursor has not moved; the next tick tries again (no crash).
            metrics.POLL_CYCLES.labels("error").inc()
            log.warning("poll.database_unavailable", error=describe_error(exc))
        await prune_deliveries(rt)
        beat()
        metrics.LOOP_LAST_RUN.labels("poll").set(time.time())
        next_tick += interval
        next_tick = max(next_tick, time.monotonic())  # after a long cycle, do not burst
        with suppress(TimeoutError):
            await asyncio.wait_for(shutdown.wait(), next_tick - time.monotonic())


async def run_once(rt: Runtime, now: dt.datetime | None = None) -> dict[str, Any] | None:
    """One poll cycle at `now` (the runtime clock by default); returns its counts, or None
    when skipped (disabled or not the leader)."""
    cfg, store, client = rt.config, rt.store, rt.shopmonkey
    if not client.enabled:
        return None
    now = now or rt.clock()
    lease_ttl = max(cfg.shopmonkey.poll_interval * 3, 60.0)
    if not await store.acquire_lease(LEASE, holder=rt.instance_id, ttl=lease_ttl, now=now):
        metrics.POLL_CYCLES.labels("skipped").inc()
        return None
    job_id = await store.start_job(JOB)
    counts = {"fetched": 0, **dict.fromkeys(RESULTS, 0)}
    try:
        cursor = await store.get_cursor(CURSOR)
        since = (
            cursor - OVERLAP
            if cursor is not None
            else now - dt.timedelta(seconds=cfg.shopmonkey.poll_lookback)
        )
        orders = await client.list_orders(field="updatedDate", since=since)
        counts["fetched"] = len(orders)
        newest: dt.datetime | None = None
        for order in orders:
            result = await receive_polled(rt, order)
            counts[result] = counts.get(result, 0) + 1
            # Every row counts for the cursor, a skipped one too: the client checked that
            # each matches the updatedDate filter, so each has one.
            updated = parse_time(order.get("updatedDate"))
            if updated and (newest is None or updated > newest):
                newest = updated
        if newest is not None:
            # Never past the present: one order dated 9999 must not make the poller look
            # only for orders after it from then on.
            await store.set_cursor(CURSOR, position=min(newest, now))
        elif cursor is None:
            await store.set_cursor(CURSOR, position=since)
        if counts["created"]:
            rt.wake_enrichment()
        await store.finish_job(job_id, status="ok", counts=counts, error=None)
        rt.health.ok("shopmonkey")
        metrics.POLL_CYCLES.labels("ok").inc()
        metrics.POLL_LAST_SUCCESS.set_to_current_time()
        if counts["created"]:
            log.info("poll.cycle", **counts)
        return counts
    except sm.ShopmonkeyAuthError as exc:
        rt.health.failing("shopmonkey", sm.auth_problem(exc))
        await _fail(rt, job_id, counts, exc)
    except CYCLE_ERRORS as exc:
        # The cursor has not moved: the next cycle fetches the same orders again.
        await _fail(rt, job_id, counts, exc)
    return counts


async def prune_deliveries(rt: Runtime) -> None:
    """Forget webhook deliveries whose signatures have expired (they can no longer be
    replayed). Every daemon does it for its tenant; a failure waits for the next tick."""
    try:
        await rt.store.prune_deliveries(now=rt.clock())
    except Exception as exc:
        log.warning("webhook.prune_failed", error=describe_error(exc))


async def _fail(rt: Runtime, job_id: int, counts: dict[str, Any], exc: BaseException) -> None:
    error = f"{type(exc).__name__}: {exc}"
    metrics.POLL_CYCLES.labels("error").inc()
    log.error("poll.failed", error=error)
    with suppress(Exception):
        await rt.store.finish_job(job_id, status="error", counts=counts, error=error[:2000])
