"""Ingestion and the webhook/poll entry points against the store on real PostgreSQL, with a
pinned clock and no daemon: one order is one lead, leads only move forward, replays change
nothing, one refused order is contained, and due-ness follows the runtime clock."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import uuid
from typing import Any

import asyncpg
import pytest

from leadd import metrics
from leadd.intake import receive_polled, receive_webhook
from leadd.intake.events import OrderEvent, Replay
from leadd.intake.ingest import ingest
from leadd.loops import poll
from leadd.store import Store
from tests.intake.conftest import T0, Env, EnvFactory, iso, order


def event(data: dict[str, object], operation: str = "INSERT", **kw: object) -> OrderEvent:
    return OrderEvent(operation, data, "webhook", **kw)  # type: ignore[arg-type]


def replay(name: str, until: dt.datetime) -> Replay:
    return Replay(hashlib.sha256(name.encode()).digest(), until)


def rejected(source: str, kind: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "leadd_orders_rejected_total", {"source": source, "reason": kind}
    )
    return value or 0.0


# --------------------------------------------------------------------------- creation


async def test_a_new_order_is_a_lead_with_touch_points_planned_from_the_clock(env: Env) -> None:
    """The lead, its first timeline row and its touch points in one write; the sequence and
    the enrichment are due by the runtime clock (T0), not the wall clock."""
    result = await ingest(env.rt, event(order()))
    assert result.result == "created" and result.state == "new" and result.lead_id is not None
    lead = await env.lead(result.lead_id)
    assert lead["enrich_after"] == T0 and lead["enrichment_status"] == "pending"
    assert lead["order_number"] == "1000" and lead["location_id"] == "downtown"
    assert await env.events(result.lead_id) == [(None, "new", "order.insert")]
    touch_points = await env.touch_points(result.lead_id)
    steps = env.rt.config.sequences[touch_points[0]["sequence"]]
    assert len(touch_points) == len(steps)
    assert touch_points[0]["due_at"] == T0 + dt.timedelta(seconds=steps[0].delay)


async def test_concurrent_deliveries_of_one_order_make_one_lead(env: Env) -> None:
    data = order()
    results = await asyncio.gather(*(ingest(env.rt, event(dict(data))) for _ in range(6)))
    assert sorted(r.result for r in results) == ["created"] + ["duplicate"] * 5
    assert len({r.lead_id for r in results}) == 1
    assert await env.store.count("leads") == 1 and await env.store.count("lead_events") == 1


async def test_an_order_first_seen_in_a_later_state_starts_there(env: Env) -> None:
    result = await ingest(env.rt, event(order(authorized=True), "UPDATE"))
    assert result.result == "created" and result.state == "qualified"
    assert result.lead_id is not None
    assert await env.events(result.lead_id) == [
        (None, "new", "order.update"),
        ("new", "qualified", "order.update"),
    ]


async def test_closed_or_old_orders_never_start_a_lead_by_the_clock(env: Env) -> None:
    """An order already closed, or created before leads.max_order_age as the runtime clock
    sees it, is ignored; the same order is a lead when the clock says it is recent."""
    closed = await ingest(env.rt, event(order(paid=True), "UPDATE"))
    assert closed.result == "ignored" and closed.reason == "order already closed"

    old = order(T0 - dt.timedelta(days=30))
    result = await ingest(env.rt, event(old, "UPDATE"))
    assert result.result == "ignored" and "max_order_age" in (result.reason or "")
    assert await env.store.count("leads") == 0

    env.clock.now = T0 - dt.timedelta(days=30)
    assert (await ingest(env.rt, event(old, "UPDATE"))).result == "created"


# --------------------------------------------------------------------------- updates


async def test_updates_only_move_forward_and_tell_duplicates_from_stale(env: Env) -> None:
    oid = str(uuid.uuid4())
    appt = ["2026-03-05T15:00:00.000Z"]
    created = await ingest(env.rt, event(order(id=oid, version=1)))
    lead_id = created.lead_id
    assert lead_id is not None
    moved = await ingest(env.rt, event(order(id=oid, version=3, appointmentDates=appt), "UPDATE"))
    assert (moved.result, moved.state, moved.lead_id) == ("updated", "appointment_set", lead_id)
    stale = await ingest(env.rt, event(order(id=oid, version=2, authorized=True), "UPDATE"))
    assert (stale.result, stale.state) == ("stale", "appointment_set")
    same = await ingest(env.rt, event(order(id=oid, version=3, appointmentDates=appt), "UPDATE"))
    assert same.result == "duplicate"
    lead = await env.lead(lead_id)
    assert lead["order_version"] == 3 and lead["state"] == "appointment_set"
    assert await env.events(lead_id) == [
        (None, "new", "order.insert"),
        ("new", "appointment_set", "order.update"),
    ]


async def test_a_delete_of_the_stored_version_loses_the_lead_and_cancels_its_sequence(
    env: Env,
) -> None:
    data = order(version=4)
    lead_id = (await ingest(env.rt, event(data))).lead_id
    assert lead_id is not None
    deleted = await ingest(env.rt, event(dict(data), "DELETE"))
    assert (deleted.result, deleted.state) == ("updated", "lost")
    assert {tp["state"] for tp in await env.touch_points(lead_id)} == {"cancelled"}
    again = await ingest(env.rt, event(dict(data), "DELETE"))  # lost is terminal
    assert (again.result, again.state) == ("duplicate", "lost")
    assert (await env.events(lead_id))[-1] == ("new", "lost", "order.delete")


async def test_a_relinked_customer_is_due_for_enrichment_at_the_clock(env: Env) -> None:
    oid = str(uuid.uuid4())
    lead_id = (await ingest(env.rt, event(order(id=oid, customerId=None)))).lead_id
    assert lead_id is not None
    await env.sql("UPDATE leads SET enrichment_status = 'done', enrich_after = NULL")
    env.clock.advance(3600)
    await ingest(env.rt, event(order(id=oid, version=2, customerId="c-2"), "UPDATE"))
    lead = await env.lead(lead_id)
    assert lead["enrichment_status"] == "partial" and lead["enrich_after"] == env.clock()


# --------------------------------------------------------------------------- replays


async def test_a_replayed_delivery_changes_nothing_until_its_memory_expires(env: Env) -> None:
    """A delivery is remembered with the lead it created (or the update it applied); the
    same delivery again is `replayed`. Once its memory has expired by the runtime clock (its
    signature would no longer pass) it is news again, and pruning forgets it."""
    oid = str(uuid.uuid4())
    until = T0 + dt.timedelta(minutes=10)
    created = await ingest(env.rt, event(order(id=oid), replay=replay("insert", until)))
    assert created.result == "created"
    update = order(id=oid, version=2, authorized=True)
    first = await ingest(env.rt, event(update, "UPDATE", replay=replay("update", until)))
    assert (first.result, first.state) == ("updated", "qualified")
    for name in ("insert", "update"):
        again = await ingest(env.rt, event(dict(update), "UPDATE", replay=replay(name, until)))
        assert (again.result, again.state, again.lead_id) == (
            "replayed",
            "qualified",
            first.lead_id,
        )

    assert await env.store.prune_deliveries(now=env.clock()) == 0
    env.clock.now = until
    newer = order(id=oid, version=3, appointmentDates=["2026-03-05T15:00:00.000Z"])
    later = await ingest(env.rt, event(newer, "UPDATE", replay=replay("update", until)))
    assert (later.result, later.state) == ("updated", "appointment_set")
    env.clock.advance(1)
    assert await env.store.prune_deliveries(now=env.clock()) == 2  # the insert's and this one


# --------------------------------------------------------------------------- entry points


async def test_the_webhook_wakes_the_enrichment_loop_only_for_a_new_lead(env: Env) -> None:
    data = order()
    assert (await receive_webhook(env.rt, event(data))).result == "created"
    assert env.wakes == [T0]
    assert (await receive_webhook(env.rt, event(dict(data)))).result == "duplicate"
    assert env.wakes == [T0]


async def test_an_order_the_database_refuses_is_contained_on_both_paths(env: Env) -> None:
    """A constraint refusing one order: the webhook gets `unstorable` with a value-free
    reason and the poller `failed`; both are recorded once per source; the next order is
    stored."""
    poison = f"poison-{uuid.uuid4().hex[:8]}"
    await env.sql(
        f"ALTER TABLE leads ADD CONSTRAINT refuse CHECK (shopmonkey_order_id <> '{poison}')"
    )
    before = rejected("webhook", "unstorable")
    result = await receive_webhook(env.rt, event(order(id=poison)))
    assert result.result == "unstorable" and result.lead_id is None
    assert "CheckViolationError" in (result.reason or "") and poison not in (result.reason or "")
    assert await receive_polled(env.rt, order(id=poison)) == "failed"
    assert await receive_polled(env.rt, order(id=poison)) == "failed"
    rows = await env.sql("SELECT source, seen FROM rejected_orders ORDER BY source")
    assert [(r["source"], r["seen"]) for r in rows] == [("poll", 2), ("webhook", 1)]
    assert rejected("webhook", "unstorable") - before == 1
    assert env.wakes == []
    assert (await receive_webhook(env.rt, event(order()))).result == "created"


class DownStore(Store):
    """A store whose database goes away when a lead is written (recording still works)."""

    async def insert_lead(self, **kwargs: Any) -> uuid.UUID | None:
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")


async def test_a_database_that_is_down_for_everyone_is_raised_not_recorded(env: Env) -> None:
    """The webhook must answer 503 (Shopmonkey retries) and the poll cycle must stop before
    its cursor moves: the error leaves both entry points, and the order is not marked
    rejected (it is not the order's fault)."""
    down = dataclasses.replace(env.rt, store=DownStore(env.pool, env.store.tenant_id))
    before = rejected("webhook", "unstorable"), rejected("poll", "unstorable")
    with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):
        await receive_webhook(down, event(order()))
    with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):
        await receive_polled(down, order())
    assert await env.sql("SELECT * FROM rejected_orders") == []
    assert (rejected("webhook", "unstorable"), rejected("poll", "unstorable")) == before
    assert down.wake_enrichment is env.rt.wake_enrichment and env.wakes == []


async def test_invalid_polled_orders_are_recorded_and_skipped(env: Env) -> None:
    assert await receive_polled(env.rt, {**order(), "customerId": 42}) == "invalid"
    assert await receive_polled(env.rt, {"id": 7}) == "invalid"
    refs = {r["order_ref"] for r in await env.sql("SELECT order_ref FROM rejected_orders")}
    assert "7" in refs and len(refs) == 2
    assert await env.store.count("leads") == 0


async def test_demo_mode_ignores_real_people_on_both_paths(make_env: EnvFactory) -> None:
    env = await make_env(demo_mode=True)
    real = {"phoneNumbers": [{"number": "+15125550123", "primary": True}]}
    result = await receive_webhook(env.rt, event(order(customer=real)))
    assert result.result == "ignored" and (result.reason or "").startswith("demo_mode")
    assert await receive_polled(env.rt, order(customer=real)) == "ignored"
    test_person = {"phoneNumbers": [{"number": "+15555550123", "primary": True}]}
    assert (await receive_webhook(env.rt, event(order(customer=test_person)))).result == "created"
    assert await env.store.count("leads") == 1


# --------------------------------------------------------------------------- the poller


async def test_one_poller_per_tenant_by_a_lease_on_the_runtime_clock(
    make_env: EnvFactory,
) -> None:
    """Two runtimes on one database: the first holds the lease and polls; the second is a
    follower until the lease expires by the clock, then it takes over. The cursor never goes
    past the clock, even for an order dated in the future."""
    first = await make_env(instance_id="daemon-a")
    second = await make_env(instance_id="daemon-b", clock=first.clock)
    first.fake.add_order(order(T0 - dt.timedelta(minutes=1)))
    future = first.fake.add_order(order(T0 + dt.timedelta(days=365)))

    counts = await poll.run_once(first.rt)
    assert counts is not None and (counts["fetched"], counts["created"]) == (2, 2)
    assert first.wakes == [T0]
    assert await poll.run_once(second.rt) is None
    cursor = await first.store.get_cursor(poll.CURSOR)
    assert cursor == T0 and future["updatedDate"] > iso(T0)

    first.clock.advance(3 * first.rt.config.shopmonkey.poll_interval + 1)
    counts = await poll.run_once(second.rt)
    assert counts is not None and counts["duplicate"] == 2  # the overlap fetches both again
    assert await poll.run_once(first.rt) is None
    holders = await first.sql("SELECT holder FROM leases")
    assert [r["holder"] for r in holders] == ["daemon-b"]
    jobs = await first.sql("SELECT status FROM job_executions ORDER BY id")
    assert [j["status"] for j in jobs] == ["ok", "ok"]
