"""Shopmonkey poll loop: every poll_interval, fetch orders updated since a stored cursor and
feed them through the same ingestion as the webhook, catching whatever the webhook missed.

One poller per tenant at a time, even with two daemons on one database: a lease row with an
expiry. Each cycle is a `job_executions` row. The cursor only moves forward, and each cycle
re-reads a small overlap so an order committed with an older updatedDate is not skipped.

A polled order passes the webhook's validation (`leads.validate_order`). One that fails it, or
that the database refuses to store, is that order's problem: recorded (`rejected_orders`, the
log, `leadd_orders_rejected_total`, the cycle's counts) and skipped, and the cursor moves past
it. Only the database being unavailable for everyone stops a cycle before the cursor moves.
Each tick also forgets webhook deliveries whose signatures have expired.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import asyncpg

from leadd import leads, metrics
from leadd.errors import describe_error
from leadd.logs import get_logger
from leadd.providers import shopmonkey as sm

if TYPE_CHECKING:
    from leadd.daemon import Daemon

log = get_logger(__name__)

JOB = "shopmonkey.poll"
LEASE = "shopmonkey.poll"
CURSOR = "shopmonkey.orders.updatedDate"
OVERLAP = dt.timedelta(minutes=2)


async def run(daemon: Daemon) -> None:
    if await daemon.wait_db() is None:
        return
    interval = daemon.config.shopmonkey.poll_interval
    next_tick = time.monotonic()
    while not daemon.shutdown.is_set():
        started = time.monotonic()
        if await run_once(daemon) is not None:  # a cycle ran (not disabled, not a follower)
            metrics.POLL_DURATION.observe(time.monotonic() - started)
        await prune_deliveries(daemon)
        daemon.supervisor.beat("poll")
        metrics.LOOP_LAST_RUN.labels("poll").set(time.time())
        next_tick += interval
        next_tick = max(next_tick, time.monotonic())  # after a long cycle, do not burst
        with suppress(TimeoutError):
            await asyncio.wait_for(daemon.shutdown.wait(), next_tick - time.monotonic())


async def run_once(daemon: Daemon, now: dt.datetime | None = None) -> dict[str, Any] | None:
    """One poll cycle; returns its counts, or None when skipped (disabled or not the leader)."""
    cfg, db, client = daemon.config, daemon.db, daemon.shopmonkey
    assert db is not None
    if not client.enabled:
        return None
    now = now or dt.datetime.now(dt.UTC)
    lease_ttl = max(cfg.shopmonkey.poll_interval * 3, 60.0)
    holder = await db.fetchrow("acquire_lease", LEASE, daemon.instance_id, lease_ttl)
    if holder is None:
        metrics.POLL_CYCLES.labels("skipped").inc()
        return None
    job = await db.fetchrow("start_job", JOB)
    assert job is not None
    counts = {
        "fetched": 0,
        "created": 0,
        "updated": 0,
        "duplicate": 0,
        "stale": 0,
        "ignored": 0,
        "invalid": 0,
        "failed": 0,
    }
    try:
        row = await db.fetchrow("get_cursor", CURSOR)
        since = (
            row["position"] - OVERLAP
            if row
            else now - dt.timedelta(seconds=cfg.shopmonkey.poll_lookback)
        )
        orders = await client.list_orders(field="updatedDate", since=since)
        counts["fetched"] = len(orders)
        newest: dt.datetime | None = None
        created = False
        for order in orders:
            result = await _ingest_one(daemon, order)
            counts[result] = counts.get(result, 0) + 1
            created = created or result == "created"
            # Every row counts for the cursor, a skipped one too: the client checked that
            # each matches the updatedDate filter, so each has one.
            updated = leads.parse_time(order.get("updatedDate"))
            if updated and (newest is None or updated > newest):
                newest = updated
        if newest is not None:
            # Never past the present: one order dated 9999 must not make the poller look
            # only for orders after it from then on.
            await db.execute("set_cursor", CURSOR, min(newest, now))
        elif row is None:
            await db.execute("set_cursor", CURSOR, since)
        if created:
            daemon.wake_touchpoints.set()
        await db.execute("finish_job", job["id"], "ok", counts, None)
        daemon.provider_problems.pop("shopmonkey", None)
        metrics.POLL_CYCLES.labels("ok").inc()
        metrics.POLL_LAST_SUCCESS.set_to_current_time()
        if counts["created"]:
            log.info("poll.cycle", **counts)
        return counts
    except sm.ShopmonkeyAuthError as exc:
        daemon.provider_problems["shopmonkey"] = sm.auth_problem(exc)
        await _fail(daemon, job["id"], counts, exc)
    except (
        sm.ShopmonkeyError,
        OSError,
        TimeoutError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
    ) as exc:
        # The cursor has not moved: the next cycle fetches the same orders again.
        await _fail(daemon, job["id"], counts, exc)
    return counts


async def _ingest_one(daemon: Daemon, order: dict[str, Any]) -> str:
    """One polled order through the webhook's validation and ingestion; its result name
    (a key of the cycle's counts). Raises only when the database is unavailable for all."""
    cfg, db = daemon.config, daemon.db
    assert db is not None
    try:
        event = leads.OrderEvent("UPDATE", leads.validate_order(order), "poll")
    except leads.BadEvent as exc:
        await leads.record_rejection(db, "poll", order, "invalid", str(exc))
        return "invalid"
    if cfg.demo_mode and leads.demo_filter_reason(order):
        return "ignored"
    try:
        result = await leads.ingest(db, cfg, event)
    except Exception as exc:
        if leads.is_transient(exc):
            raise
        log.exception("poll.order_failed", order_id=leads.order_ref(order))
        await leads.record_rejection(db, "poll", order, "unstorable", describe_error(exc))
        return "failed"
    return result.result


async def prune_deliveries(daemon: Daemon) -> None:
    """Forget webhook deliveries whose signatures have expired (they can no longer be
    replayed). Every daemon does it for its tenant; a failure waits for the next tick."""
    assert daemon.db is not None
    try:
        await daemon.db.execute("prune_deliveries")
    except Exception as exc:
        log.warning("webhook.prune_failed", error=describe_error(exc))


async def _fail(daemon: Daemon, job_id: int, counts: dict[str, Any], exc: Exception) -> None:
    assert daemon.db is not None
    error = f"{type(exc).__name__}: {exc}"
    metrics.POLL_CYCLES.labels("error").inc()
    log.error("poll.failed", error=error)
    with suppress(Exception):
        await daemon.db.execute("finish_job", job_id, "error", counts, error[:2000])
