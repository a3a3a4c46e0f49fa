"""Group commit of new leads (issue 11): concurrent orders are written by one statement and
one commit, each caller answered with its own lead once it has committed; the same order
twice is still one lead, and a row PostgreSQL refuses fails alone, not its batch."""

from __future__ import annotations

import asyncio

import asyncpg

from leadd import metrics
from leadd.intake.events import IngestResult, OrderEvent
from leadd.intake.ingest import ingest
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
