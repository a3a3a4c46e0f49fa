"""Group commit of new leads (issue 11): concurrent orders are written by one statement and
one commit, each caller answered with its own lead once it has committed; the same order
twice is still one lead, and a row PostgreSQL refuses fails alone, not its batch."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid

import asyncpg
import pytest

from leadd import metrics
from leadd.intake import receive_webhook
from leadd.intake.events import IngestResult, OrderEvent, Replay
from leadd.intake.ingest import ingest
from leadd.store import DB_ERRORS
from leadd.store.errors import is_transient
from tests.helpers import wait_for
from tests.intake.conftest import Env, order


def statements() -> float:
    value = metrics.REGISTRY.get_sample_value("leadd_db_statements_total")
    assert value is not None
    return value


async def test_concurrent_orders_share_commits_and_a_bad_row_fails_alone(env: Env) -> None:
    orders = [order(number=1000 + i) for i in range(40)]
    twice = order(number=2000)
    # jsonb refuses a NUL escape: this order's row is the database's to refuse.
    hostile = order(number=3000, name="bad\x00name")
    calls = [
        *(OrderEvent("INSERT", o, "webhook") for o in orders),
        *(OrderEvent("INSERT", twice, "webhook") for _ in range(5)),
        OrderEvent("INSERT", hostile, "webhook"),
    ]
    before = statements()
    results = await asyncio.gather(*(ingest(env.rt, c) for c in calls), return_exceptions=True)
    used = statements() - before

    *created, bad = results
    assert isinstance(bad, asyncpg.PostgresError) and not isinstance(bad, IngestResult)
    assert all(isinstance(r, IngestResult) for r in created), created
    fine = [r for r in created if isinstance(r, IngestResult)]
    assert [r.result for r in fine[:40]] == ["created"] * 40
    assert sorted(r.result for r in fine[40:]) == ["created", "duplicate", "duplicate",
                                                    "duplicate", "duplicate"]  # fmt: skip
    assert len({r.lead_id for r in fine[40:]}) == 1  # the same order is one lead
    stored = await env.sql("SELECT shopmonkey_order_id FROM leads")
    assert {r[0] for r in stored} == {o["id"] for o in [*orders, twice]}
    touch_points = await env.sql("SELECT count(*) FROM touch_points")
    events = await env.sql("SELECT count(*) FROM lead_events")
    assert events[0][0] == 41 and touch_points[0][0] == 41 * len(env.rt.config.sequences["default"])
    # Shared commits: far fewer statements than the 46 one-at-a-time inserts would take
    # (the duplicates' look-ups and the bad row's own retry included).
    assert env.store._new_leads is not None and env.store._new_leads.batches >= 1
    assert used < 46, used


async def test_a_lone_order_is_written_at_once_not_after_a_window(env: Env) -> None:
    """Without company, a new lead is one statement of its own (no waiting for a batch)."""
    before = statements()
    result = await ingest(env.rt, OrderEvent("INSERT", order(), "webhook"))
    assert result.result == "created"
    assert statements() - before == 1
    assert env.store._new_leads is not None and env.store._new_leads.batches == 0


# --------------------------------------------------------------------------- the commit

HOLD_KEY = 0x1EADD_C0
# A deferred constraint trigger runs at COMMIT: this one makes every commit that created a
# lead wait for an advisory lock the test holds, so the test can look at callers while their
# statement has run but not committed.
HOLD_COMMITS = f"""
CREATE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_advisory_xact_lock({HOLD_KEY}); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON leads
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hold_commit();
"""


async def commit_waiting(env: Env) -> bool:
    rows = await env.sql(
        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
        " AND datname = current_database()"
    )
    return bool(rows)


def webhook(data: dict[str, object], delivery: str | None = None) -> OrderEvent:
    until = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    seen = None if delivery is None else Replay(hashlib.sha256(delivery.encode()).digest(), until)
    return OrderEvent("INSERT", data, "webhook", delivery, seen)


async def test_no_caller_is_answered_before_its_lead_has_committed(env: Env) -> None:
    """Twenty webhooks in one batch whose commit is held: while it waits, not one caller has
    an answer and no other session sees a lead; released, each gets its own committed lead."""
    await env.pool.execute(HOLD_COMMITS)
    async with env.pool.acquire() as holder:
        await holder.execute("SELECT pg_advisory_lock($1)", HOLD_KEY)
        calls = [
            asyncio.ensure_future(receive_webhook(env.rt, webhook(order()))) for _ in range(20)
        ]
        await wait_for(lambda: commit_waiting(env))
        assert not any(c.done() for c in calls)
        assert await env.store.count("leads") == 0
        await holder.execute("SELECT pg_advisory_unlock($1)", HOLD_KEY)
        results = await asyncio.gather(*calls)
    assert {r.result for r in results} == {"created"}
    stored = {r["id"] for r in await env.sql("SELECT id FROM leads")}
    assert stored == {r.lead_id for r in results} and len(stored) == 20
    assert env.store._new_leads is not None and env.store._new_leads.batches == 1


async def test_a_connection_lost_at_commit_fails_the_whole_batch_and_stores_nothing(
    env: Env,
) -> None:
    """The database going away while a batch commits is every caller's failure (the webhook
    answers 503 to each and Shopmonkey retries): none is told its lead exists, none does,
    and no delivery is remembered, so the retries are processed."""
    await env.pool.execute(HOLD_COMMITS)
    events = [webhook(order(), f"msg_{i}") for i in range(10)]
    async with env.pool.acquire() as holder:
        await holder.execute("SELECT pg_advisory_lock($1)", HOLD_KEY)
        calls = [asyncio.ensure_future(receive_webhook(env.rt, e)) for e in events]
        await wait_for(lambda: commit_waiting(env))
        await holder.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE wait_event = 'advisory' AND datname = current_database()"
        )
        results = await asyncio.gather(*calls, return_exceptions=True)
        await holder.execute("SELECT pg_advisory_unlock($1)", HOLD_KEY)
    assert all(isinstance(r, DB_ERRORS) and is_transient(r) for r in results), results
    assert await env.sql("SELECT * FROM leads") == []
    assert await env.sql("SELECT * FROM webhook_deliveries") == []
    await env.sql("DROP TRIGGER hold_commit ON leads")
    retried = await asyncio.gather(*(receive_webhook(env.rt, e) for e in events))
    assert {r.result for r in retried} == {"created"}


async def test_deliveries_are_remembered_iff_stored_when_one_row_of_the_batch_is_refused(
    env: Env,
) -> None:
    """A batch with one order PostgreSQL refuses: that one is `unstorable` (the webhook's
    422) and its delivery is not remembered; its neighbours are created and theirs are, so
    their replays answer `replayed` and the refused one, once storable, is created."""
    poison = f"poison-{uuid.uuid4().hex[:8]}"
    await env.sql(
        f"ALTER TABLE leads ADD CONSTRAINT refuse CHECK (shopmonkey_order_id <> '{poison}')"
    )
    events = [webhook(order(), f"msg_{i}") for i in range(12)]
    events[6] = webhook(order(id=poison), "msg_poison")
    results = await asyncio.gather(*(receive_webhook(env.rt, e) for e in events))
    assert [r.result for r in results] == ["created"] * 6 + ["unstorable"] + ["created"] * 5
    assert await env.store.count("leads") == 11
    remembered = {r["digest"] for r in await env.sql("SELECT digest FROM webhook_deliveries")}
    assert remembered == {e.replay.digest for e in events if e.replay and e is not events[6]}

    again = await asyncio.gather(*(receive_webhook(env.rt, e) for e in events))
    assert [r.result for r in again] == ["replayed"] * 6 + ["unstorable"] + ["replayed"] * 5
    assert [r.lead_id for r in again] == [r.lead_id for r in results]
    await env.sql("ALTER TABLE leads DROP CONSTRAINT refuse")
    assert (await receive_webhook(env.rt, events[6])).result == "created"


async def test_a_closed_store_refuses_new_leads_as_an_unavailable_database(env: Env) -> None:
    """After close() (shutdown) a webhook still being handled is a 503, never a hang."""
    assert (await receive_webhook(env.rt, webhook(order()))).result == "created"
    assert env.store._new_leads is not None
    await env.store._new_leads.close()
    with pytest.raises(DB_ERRORS) as refused:
        await receive_webhook(env.rt, webhook(order()))
    assert is_transient(refused.value)
