"""The outreach store on real PostgreSQL: the clock passed in decides due-ness and the cap's
window; every change of a claimed row is conditional on its owner; a failed attempt is one
unit of work whose address outcome holds whoever owns the row."""

from __future__ import annotations

import datetime as dt

import asyncpg

from leadd.runtime import Runtime
from leadd.store.outreach_models import (
    AddressOutcome,
    Attempt,
    DueCounts,
    GateResult,
    KeepInDoubt,
    RetryAt,
)
from tests.e2e.outreach_support import SMS_FROM, PinnedClock
from tests.outreach.support import OWNER, PHONE, add_lead, add_touch_point, chicago, row

HOUR = dt.timedelta(hours=1)


async def test_due_counts_move_with_the_clock(
    rt: Runtime, clock: PinnedClock, conn: asyncpg.Connection
) -> None:
    lead = await add_lead(conn, rt.config, created_at=chicago(7, 8))
    t = clock.now
    await add_touch_point(conn, rt.config, lead, step=0, due_at=t - 2 * HOUR)
    await add_touch_point(conn, rt.config, lead, step=1, due_at=t - dt.timedelta(minutes=1))
    await add_touch_point(conn, rt.config, lead, step=2, due_at=t + HOUR, state="unknown")
    store = rt.store
    assert await store.count_due(now=t, overdue_after=3600) == DueCounts(2, 1, 1)
    assert await store.count_due(now=t - 3 * HOUR, overdue_after=3600) == DueCounts(0, 0, 1)
    assert await store.count_due(now=t + HOUR, overdue_after=3600) == DueCounts(2, 2, 1)


async def test_the_gate_counts_the_cap_in_the_24_hours_before_the_clock_and_marks_once(
    rt: Runtime, clock: PinnedClock, conn: asyncpg.Connection
) -> None:
    """Sends to the address 25 h and 23 h before `now`: only the later one is what the cap
    counts. The first gate marks the row (passed), a second finds it already gated."""
    lead = await add_lead(conn, rt.config, created_at=chicago(7, 8))
    for i, hours in enumerate((25, 23)):
        await conn.execute(
            """INSERT INTO touch_points (tenant_id, lead_id, sequence, step_index, step_name,
                   channel, due_at, state, recipient, sent_at)
               VALUES ($1, $2, 'earlier', $3, 'earlier', 'sms', $4, 'sent', $5, $4)""",
            rt.config.tenant.id, lead, i, clock.now - hours * HOUR, PHONE,
        )  # fmt: skip
    ack = await add_touch_point(conn, rt.config, lead, step=0, due_at=clock.now)
    [tp] = await rt.store.claim_touchpoints(owner=OWNER, limit=5, lease=30, now=clock.now)

    async def gate() -> GateResult | None:
        return await rt.store.gate_touchpoint(
            touch_point_id=tp.id, owner=OWNER, channel="sms", address=PHONE, sender=SMS_FROM,
            body="Hi!", lead_state="new", now=clock.now,
        )  # fmt: skip

    first = await gate()
    assert first is not None and first.passed
    assert first.recent == (clock.now - 23 * HOUR,)
    marked = await row(conn, ack)
    assert (marked["recipient"], marked["sender"], marked["body"]) == (PHONE, SMS_FROM, "Hi!")
    assert marked["gated_at"] is not None
    second = await gate()
    assert second is not None and not second.passed


async def test_a_failed_attempt_changes_only_our_row_but_the_address_outcome_always_holds(
    rt: Runtime, clock: PinnedClock, conn: asyncpg.Connection
) -> None:
    """Recorded as another daemon's row: nothing of the row, no attempt; the opt-out and the
    cancellation of pending SMS to the address are written all the same. As ours: the change
    and the attempt, in the same transaction."""
    lead = await add_lead(conn, rt.config, created_at=chicago(7, 8))
    ack = await add_touch_point(conn, rt.config, lead, step=0, due_at=clock.now)
    later = await add_touch_point(conn, rt.config, lead, step=1, due_at=clock.now + HOUR)
    [tp] = await rt.store.claim_touchpoints(owner=OWNER, limit=5, lease=30, now=clock.now)
    gate = await rt.store.gate_touchpoint(
        touch_point_id=tp.id, owner=OWNER, channel="sms", address=PHONE, sender=SMS_FROM,
        body="Hi!", lead_state="new", now=clock.now,
    )  # fmt: skip
    assert gate is not None and gate.passed  # in flight: the opt-out leaves it to us
    attempt = Attempt(channel="sms", provider="twilio", outcome="failed", http_status=400,
                      error_code="21610", error_message="unsubscribed", latency_ms=12.5)  # fmt: skip
    opted_out = AddressOutcome("sms", PHONE, "opted out (21610)", opt_out_reason="twilio_21610")
    recorded = await rt.store.record_failed_attempt(
        touch_point_id=tp.id, lead_id=lead, owner="not-the-owner", attempt=attempt,
        change=RetryAt(clock.now + HOUR, "retry"), address_outcome=opted_out,
    )  # fmt: skip
    assert recorded is False
    assert (await row(conn, ack))["state"] == "sending"
    assert await conn.fetch("SELECT * FROM message_attempts") == []
    assert (await row(conn, later))["state"] == "cancelled"
    assert await conn.fetchval("SELECT reason FROM contact_optouts") == "twilio_21610"

    retry = RetryAt(clock.now + HOUR, "retry: 20429 slow down")
    recorded = await rt.store.record_failed_attempt(
        touch_point_id=tp.id, lead_id=lead, owner=OWNER, attempt=attempt, change=retry
    )
    assert recorded is True
    again = await row(conn, ack)
    assert (again["state"], again["due_at"], again["last_error"]) == (
        "scheduled",
        clock.now + HOUR,
        "retry: 20429 slow down",
    )
    [saved] = await conn.fetch("SELECT outcome, error_code, latency_ms FROM message_attempts")
    assert tuple(saved) == ("failed", "21610", 12.5)


async def test_a_send_in_doubt_is_handed_to_reconciliation_after_the_lookup_delay(
    rt: Runtime, clock: PinnedClock, conn: asyncpg.Connection
) -> None:
    """An ambiguous answer: the row stays `sending`, owned by nobody (the sender's heartbeat
    cannot renew it), with a lease as long as the lookup delay and the resend time as due_at.
    Until the delay runs out nobody can claim it for reconciliation; then anyone can, once."""
    lead = await add_lead(conn, rt.config, created_at=chicago(7, 8))
    ack = await add_touch_point(conn, rt.config, lead, step=0, due_at=clock.now)
    [tp] = await rt.store.claim_touchpoints(owner=OWNER, limit=5, lease=600, now=clock.now)
    attempt = Attempt(channel="sms", provider="twilio", outcome="retry", http_status=503)
    retry_at = clock.now + dt.timedelta(seconds=30)
    assert await rt.store.record_failed_attempt(
        touch_point_id=tp.id, lead_id=lead, owner=OWNER, attempt=attempt,
        change=KeepInDoubt(lookup_in=600, retry_at=retry_at),
    )  # fmt: skip
    in_doubt = await row(conn, ack)
    assert (in_doubt["state"], in_doubt["claimed_by"], in_doubt["due_at"]) == (
        "sending",
        None,
        retry_at,
    )
    remaining = await conn.fetchval(
        "SELECT lease_until - now() FROM touch_points WHERE id = $1", ack
    )
    assert remaining > dt.timedelta(minutes=9)
    assert await rt.store.claim_stale_sending(owner="someone", limit=5, lease=30) == []
    # Ours no more: the sender's heartbeat and its changes leave it alone.
    assert await rt.store.extend_leases(owner=OWNER, lease=600, ids=[ack]) == 0
    assert not await rt.store.reschedule(
        touch_point_id=ack, owner=OWNER, due_at=clock.now, reason="x"
    )

    await conn.execute(  # the lookup delay runs out (leases are on the database's clock)
        "UPDATE touch_points SET lease_until = now() - interval '1 millisecond' WHERE id = $1",
        ack,
    )
    [stale] = await rt.store.claim_stale_sending(owner="someone", limit=5, lease=30)
    assert (stale.id, stale.claimed_by, stale.reconcile_attempts) == (ack, "someone", 1)
    assert stale.prev_claimed_at == tp.claimed_at  # when the ambiguous attempt began
    assert await rt.store.claim_stale_sending(owner="other", limit=5, lease=30) == []
