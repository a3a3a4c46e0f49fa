"""Shopmonkey poll loop: every poll_interval, fetch orders updated since a stored cursor and
feed them through the same ingestion as the webhook, catching whatever the webhook missed.

One poller per tenant at a time, even with two daemons on one database: a lease row with an
expiry. Each cycle is a `job_executions` row. The cursor only moves forward, and each cycle
re-reads a small overlap so an order committed with an older updatedDate is not skipped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import asyncpg

from leadd import leads, metrics
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
            try:
                event = leads.OrderEvent("UPDATE", leads.validate_order(order), "poll")
            except leads.BadEvent as exc:
                counts["invalid"] += 1
                log.warning(
                    "poll.invalid_order", order_id=str(order.get("id"))[:64], reason=str(exc)
                )
                continue
            if cfg.demo_mode and leads.demo_filter_reason(order):
                counts["ignored"] += 1
                continue
            result = await leads.ingest(db, cfg, event)
            counts[result.result] = counts.get(result.result, 0) + 1
            created = created or result.result == "created"
            updated = leads.parse_time(order.get("updatedDate"))
            if updated and (newest is None or updated > newest):
                newest = updated
        if newest is not None:
            await db.execute("set_cursor", CURSOR, newest)
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
        daemon.provider_problems["shopmonkey"] = f"authentication failed: {exc}"
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


async def _fail(daemon: Daemon, job_id: int, counts: dict[str, Any], exc: Exception) -> None:
    assert daemon.db is not None
    error = f"{type(exc).__name__}: {exc}"
    metrics.POLL_CYCLES.labels("error").inc()
    log.error("poll.failed", error=error)
    with suppress(Exception):
        await daemon.db.execute("finish_job", job_id, "error", counts, error[:2000])
