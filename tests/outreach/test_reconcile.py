"""Reconciling sends in doubt against the store and the fake Twilio, without a daemon: look
before resending, give up into `unknown` after a bounded number of failed lookups, and say
so in the runtime's health while it lasts."""

from __future__ import annotations

import json
import uuid

import asyncpg

from leadd.outreach.reconcile import MAX_RECONCILE_LOOKUPS, reconcile_in_doubt
from leadd.runtime import Runtime
from tests.e2e.outreach_support import SMS_FROM, PinnedClock
from tests.fakes.twilio import FakeTwilio
from tests.outreach.support import PHONE, add_lead, add_touch_point, chicago, row

BODY = "Still there, Jamie?"


async def in_doubt(
    conn: asyncpg.Connection,
    rt: Runtime,
    lead: uuid.UUID,
    *,
    step: int,
    gated: bool,
    **more: object,
) -> int:
    """A row another daemon left `sending` (its lease expired a second ago), gated or not."""
    columns: dict[str, object] = {"state": "sending", "claimed_by": "dead-daemon", "attempts": 1}
    if gated:
        address = PHONE if step < 2 else "jamie@example.com"
        columns |= {"recipient": address, "sender": SMS_FROM, "body": BODY}
    tp_id = await add_touch_point(
        conn, rt.config, lead, step=step, due_at=chicago(7, 9), **(columns | more)
    )
    await conn.execute(
        "UPDATE touch_points SET claimed_at = now() - interval '1 minute',"
        " lease_until = now() - interval '1 second',"
        " gated_at = CASE WHEN $2 THEN now() - interval '1 minute' END WHERE id = $1",
        tp_id,
        gated,
    )
    return tp_id


async def test_what_never_passed_its_gate_or_cannot_be_looked_up_is_due_again_now(
    rt: Runtime, clock: PinnedClock, conn: asyncpg.Connection, twilio: FakeTwilio
) -> None:
    """An SMS that never passed its gate left nothing on the machine; a gated e-mail has no
    lookup API (at-least-once). Both are due again at the clock's now, without a lookup."""
    lead = await add_lead(conn, rt.config, created_at=chicago(7, 9), email="jamie@example.com")
    sms = await in_doubt(conn, rt, lead, step=1, gated=False)
    mail = await in_doubt(conn, rt, lead, step=2, gated=True)
    assert await reconcile_in_doubt(rt, limit=10) == {"rescheduled": 2}
    for tp_id, reason in [
        (sms, "recovered: not sent before crash"),
        (mail, "recovered: resending after reconciliation"),
    ]:
        again = await row(conn, tp_id)
        assert (again["state"], again["due_at"], again["last_error"]) == (
            "scheduled",
            clock.now,
            reason,
        )
        assert again["claimed_by"] is None
    assert twilio.list_requests == []


async def test_a_send_found_at_twilio_is_recorded_as_sent_and_not_resent(
    rt: Runtime, conn: asyncpg.Connection, twilio: FakeTwilio
) -> None:
    lead = await add_lead(conn, rt.config, created_at=chicago(7, 9))
    tp_id = await in_doubt(conn, rt, lead, step=1, gated=True)
    message = twilio.add_message(to=PHONE, from_=SMS_FROM, body=BODY)
    assert await reconcile_in_doubt(rt, limit=10) == {"reconciled": 1}
    sent = await row(conn, tp_id)
    assert (sent["state"], sent["provider_id"]) == ("sent", message["sid"])
    [attempt] = await conn.fetch("SELECT outcome, provider_id FROM message_attempts")
    assert tuple(attempt) == ("reconciled", message["sid"])
    assert await conn.fetchval("SELECT count(*) FROM chat_messages") == 1
    assert await conn.fetchval("SELECT state FROM leads WHERE id = $1", lead) == "contacted"
    assert await reconcile_in_doubt(rt, limit=10) == {}  # nothing left in doubt
    assert len(twilio.messages) == 1  # only the one Twilio had


async def test_lookups_that_keep_failing_end_in_unknown_and_the_health_says_so(
    rt: Runtime, clock: PinnedClock, conn: asyncpg.Connection, twilio: FakeTwilio
) -> None:
    """Twilio's message list answers 500: the row stays `sending` under a backoff lease and
    /readyz's health names the failing lookups (no customer data); the lookup that reaches
    MAX_RECONCILE_LOOKUPS gives up into `unknown` (row, lead, gauge); a later pass with
    nothing in doubt clears the health."""
    failing = json.dumps({"code": 20500, "message": "Internal Server Error", "status": 500})
    twilio.respond_next(10, status=500, body=failing, method="GET")
    lead = await add_lead(conn, rt.config, created_at=chicago(7, 9))
    tp_id = await in_doubt(
        conn, rt, lead, step=1, gated=True, reconcile_attempts=MAX_RECONCILE_LOOKUPS - 2
    )
    assert await reconcile_in_doubt(rt, limit=10) == {"lookup_failed": 1}
    waiting = await row(conn, tp_id)
    assert waiting["state"] == "sending" and waiting["reconcile_attempts"] == 7
    assert "look up sent SMS at Twilio (HTTP 500)" in rt.health.problems["twilio"]
    assert PHONE[2:] not in rt.health.problems["twilio"]

    await conn.execute(  # the backoff lease runs out (leases are on the database's clock)
        "UPDATE touch_points SET lease_until = now() - interval '1 second' WHERE id = $1", tp_id
    )
    assert await reconcile_in_doubt(rt, limit=10) == {"unknown": 1}
    given_up = await row(conn, tp_id)
    assert given_up["state"] == "unknown"
    assert given_up["last_error"].startswith("could not confirm with Twilio after 8 lookups")
    error = await conn.fetchval("SELECT last_error FROM leads WHERE id = $1", lead)
    assert error.startswith("later: could not confirm with Twilio after 8 lookups (HTTP 500)")
    assert "twilio" in rt.health.problems
    due = await rt.store.count_due(now=clock(), overdue_after=60)
    assert due.unconfirmed == 1
    assert twilio.messages == []  # never resent

    assert await reconcile_in_doubt(rt, limit=10) == {}
    assert "twilio" not in rt.health.problems


async def test_once_the_list_answers_again_sends_waiting_for_a_lookup_go_at_once(
    rt: Runtime, conn: asyncpg.Connection, twilio: FakeTwilio
) -> None:
    """Two lookups fail: both sends are handed over (nobody's) for another lookup after a
    backoff, here grown to an hour. A third send's lookup then succeeds: the list answers
    again, so the two are claimable at the next pass, not in an hour, and that lookup is
    not counted towards giving up (each has made one)."""
    failing = json.dumps({"code": 20500, "message": "Internal Server Error", "status": 500})
    twilio.respond_next(2, status=500, body=failing, method="GET")
    lead = await add_lead(conn, rt.config, created_at=chicago(7, 9))
    waiting = [await in_doubt(conn, rt, lead, step=step, gated=True) for step in (0, 1)]
    assert await reconcile_in_doubt(rt, limit=10) == {"lookup_failed": 2}
    for tp_id in waiting:
        handed = await row(conn, tp_id)
        assert (handed["state"], handed["claimed_by"], handed["reconcile_attempts"]) == (
            "sending",
            None,
            1,
        )
    await conn.execute(  # a backoff grown during a long outage
        "UPDATE touch_points SET lease_until = now() + interval '1 hour' WHERE id = ANY($1)",
        waiting,
    )
    assert await reconcile_in_doubt(rt, limit=10) == {}

    other = await add_lead(conn, rt.config, created_at=chicago(7, 9), phone="+13125550124")
    fresh = await in_doubt(conn, rt, other, step=1, gated=True)
    assert await reconcile_in_doubt(rt, limit=10) == {"rescheduled": 1}  # the list answers
    assert (await row(conn, fresh))["state"] == "scheduled"
    assert "twilio" not in rt.health.problems
    assert await reconcile_in_doubt(rt, limit=10) == {"rescheduled": 2}
    for tp_id in waiting:
        looked = await row(conn, tp_id)
        assert (looked["state"], looked["reconcile_attempts"]) == ("scheduled", 1)
    assert twilio.messages == []
