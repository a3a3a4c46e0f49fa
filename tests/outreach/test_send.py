"""Sending claimed touch points: the outreach services against the store on real PostgreSQL and
the fake Twilio, without a daemon process. Time moves only through the runtime's pinned clock:
no row is rewritten to make it due."""

from __future__ import annotations

import datetime as dt

import asyncpg

from leadd.loops import touchpoints
from leadd.outreach.send import Sender
from leadd.runtime import Runtime
from leadd.store.outreach_models import TouchPoint
from tests.e2e.outreach_support import SMS_FROM, PinnedClock
from tests.fakes.twilio import FakeTwilio
from tests.outreach.support import OWNER, PHONE, add_lead, add_touch_point, chicago, row


async def claim(rt: Runtime, limit: int = 10) -> list[TouchPoint]:
    return await rt.store.claim_touchpoints(
        owner=OWNER, limit=limit, lease=rt.config.touchpoints.lease, now=rt.clock()
    )


async def test_a_follow_up_due_at_night_waits_for_the_morning_on_the_clock(
    rt: Runtime, clock: PinnedClock, conn: asyncpg.Connection, twilio: FakeTwilio
) -> None:
    """Claim -> gate -> record with the clock moving across quiet hours: due at 20:30 in the
    recipient's zone, the follow-up is claimed then and deferred to 09:00 (not an attempt,
    nothing sent); the next morning it is not due at 08:59:59, and at 09:00 one cycle of the
    loop sends it, records the attempt and the transcript line, and moves the lead."""
    lead = await add_lead(conn, rt.config, created_at=chicago(7, 18, 30))
    later = await add_touch_point(conn, rt.config, lead, step=1, due_at=chicago(7, 20, 30))

    clock.now = chicago(7, 20, 29, 59)
    assert await claim(rt) == []  # a second early: not due

    clock.now = chicago(7, 20, 30)
    [tp] = await claim(rt)
    assert (tp.id, tp.lead_state, tp.phone, tp.attempts) == (later, "new", PHONE, 1)
    assert await Sender(rt).process(tp) == "deferred"
    deferred = await row(conn, later)
    assert (deferred["state"], deferred["due_at"], deferred["attempts"]) == (
        "scheduled",
        chicago(8, 9),
        0,
    )
    assert deferred["last_error"] == "deferred: outside allowed window"
    assert deferred["gated_at"] is None and twilio.messages == []

    clock.now = chicago(8, 8, 59, 59)
    assert await touchpoints.run_once(rt) == {}

    clock.now = chicago(8, 9)
    assert await touchpoints.run_once(rt) == {"sent": 1}
    [message] = twilio.messages
    assert (message["to"], message["from"]) == (PHONE, SMS_FROM)
    assert message["body"] == "Still there, Jamie?"
    sent = await row(conn, later)
    assert (sent["state"], sent["provider_id"], sent["attempts"]) == ("sent", message["sid"], 1)
    assert (sent["recipient"], sent["sender"], sent["body"]) == (PHONE, SMS_FROM, message["body"])
    [attempt] = await conn.fetch("SELECT * FROM message_attempts")
    assert (attempt["outcome"], attempt["http_status"], attempt["provider_id"]) == (
        "sent",
        201,
        message["sid"],
    )
    [line] = await conn.fetch("SELECT direction, address, body FROM chat_messages")
    assert tuple(line) == ("outbound", PHONE, "Still there, Jamie?")
    assert await conn.fetchval("SELECT state FROM leads WHERE id = $1", lead) == "contacted"
    events = await conn.fetch("SELECT from_state, to_state, cause FROM lead_events")
    assert [tuple(e) for e in events] == [("new", "contacted", "sms.sent")]


async def test_the_first_acknowledgement_goes_at_night_only_while_it_is_instant(
    rt: Runtime, clock: PinnedClock, conn: asyncpg.Connection, twilio: FakeTwilio
) -> None:
    """At 23:00 the acknowledgement of a lead that arrived a minute ago goes at once; one
    that arrived 16 minutes ago (held up) waits for 09:00 like any follow-up."""
    fresh = await add_lead(conn, rt.config, created_at=chicago(7, 22, 59))
    stale = await add_lead(conn, rt.config, created_at=chicago(7, 22, 44), phone="+13125550124")
    sent = await add_touch_point(conn, rt.config, fresh, step=0, due_at=chicago(7, 22, 59))
    held = await add_touch_point(conn, rt.config, stale, step=0, due_at=chicago(7, 22, 44))
    clock.now = chicago(7, 23)
    assert await touchpoints.run_once(rt) == {"sent": 1, "deferred": 1}
    assert [m["to"] for m in twilio.messages] == [PHONE]
    assert (await row(conn, sent))["state"] == "sent"
    assert (await row(conn, held))["due_at"] == chicago(8, 9)


async def test_a_staff_message_ignores_quiet_hours_and_the_cap_but_not_the_opt_out(
    rt: Runtime, clock: PinnedClock, conn: asyncpg.Connection, twilio: FakeTwilio
) -> None:
    """A person's message goes at 23:15 with the day's SMS cap used up, while the automated
    follow-up due then waits; a second one, queued before the customer opted out, is
    cancelled by the gate and never reaches Twilio."""
    lead = await add_lead(conn, rt.config, created_at=chicago(7, 9), state="contacted")
    for i in range(3):  # the cap (3 a day) is used up by sends an hour ago
        await conn.execute(
            """INSERT INTO touch_points (tenant_id, lead_id, sequence, step_index, step_name,
                   channel, due_at, state, recipient, sent_at)
               VALUES ($1, $2, 'earlier', $3, 'earlier', 'sms', $4, 'sent', $5, $4)""",
            rt.config.tenant.id, lead, i, chicago(7, 22, 15), PHONE,
        )  # fmt: skip
    follow_up = await add_touch_point(conn, rt.config, lead, step=1, due_at=chicago(7, 23))
    clock.now = chicago(7, 23, 15)
    first = await rt.store.add_staff_message(lead, body="Call me back?", author="ops", now=clock())
    assert first is not None and first.touch_point_id is not None
    assert await touchpoints.run_once(rt) == {"sent": 1, "deferred": 1}
    assert [m["body"] for m in twilio.messages] == ["Call me back?"]
    assert (await row(conn, follow_up))["due_at"] == chicago(8, 9)
    [line] = await conn.fetch("SELECT author, body FROM chat_messages")
    assert tuple(line) == ("ops", "Call me back?")

    second = await rt.store.add_staff_message(lead, body="Hello?", author="ops", now=clock())
    assert second is not None and second.touch_point_id is not None
    await conn.execute(
        "INSERT INTO contact_optouts (tenant_id, channel, address, reason)"
        " VALUES ($1, 'sms', $2, 'keyword')",
        rt.config.tenant.id,
        PHONE,
    )
    assert await touchpoints.run_once(rt) == {"cancelled": 1}
    cancelled = await row(conn, second.touch_point_id)
    assert (cancelled["state"], cancelled["last_error"]) == ("cancelled", "sms opted out")
    assert len(twilio.messages) == 1


async def test_a_21610_answer_opts_the_phone_out_and_cancels_its_pending_sms(
    rt: Runtime, conn: asyncpg.Connection, twilio: FakeTwilio
) -> None:
    """One unit of work: the failed row with its attempt, the opt-out, and every other SMS to
    that phone not yet gated cancelled (another lead of the same person too); e-mail stays."""
    twilio.opted_out.add(PHONE)
    lead = await add_lead(conn, rt.config, created_at=chicago(7, 9), email="j@example.com")
    other = await add_lead(conn, rt.config, created_at=chicago(7, 9))
    ack = await add_touch_point(conn, rt.config, lead, step=0, due_at=chicago(7, 9))
    later = await add_touch_point(conn, rt.config, lead, step=1, due_at=chicago(7, 11))
    mail = await add_touch_point(conn, rt.config, lead, step=2, due_at=chicago(8, 9))
    sibling = await add_touch_point(conn, rt.config, other, step=1, due_at=chicago(7, 11))
    [tp] = await claim(rt)
    assert await Sender(rt).process(tp) == "failed"
    assert (await row(conn, ack))[
        "last_error"
    ] == "21610: Attempt to send to unsubscribed recipient"
    assert {tp_id: (await row(conn, tp_id))["state"] for tp_id in (later, sibling, mail)} == {
        later: "cancelled",
        sibling: "cancelled",
        mail: "scheduled",
    }
    assert (await row(conn, later))["last_error"] == "opted out (21610)"
    [opt] = await conn.fetch("SELECT channel, address, reason FROM contact_optouts")
    assert tuple(opt) == ("sms", PHONE, "twilio_21610")
    [attempt] = await conn.fetch("SELECT outcome, error_code FROM message_attempts")
    assert tuple(attempt) == ("failed", "21610")


async def test_an_undeliverable_number_is_said_on_the_lead_and_not_opted_out(
    rt: Runtime, conn: asyncpg.Connection, twilio: FakeTwilio
) -> None:
    twilio.invalid.add(PHONE)
    lead = await add_lead(conn, rt.config, created_at=chicago(7, 9))
    await add_touch_point(conn, rt.config, lead, step=0, due_at=chicago(7, 9))
    later = await add_touch_point(conn, rt.config, lead, step=1, due_at=chicago(7, 11))
    [tp] = await claim(rt)
    assert await Sender(rt).process(tp) == "failed"
    error = await conn.fetchval("SELECT last_error FROM leads WHERE id = $1", lead)
    assert error.startswith("sms: undeliverable number (21211: Invalid 'To'")
    assert (await row(conn, later))["last_error"] == "undeliverable number (21211)"
    assert await conn.fetch("SELECT * FROM contact_optouts") == []


async def test_a_throttled_send_is_retried_on_the_runtime_clock(
    rt: Runtime, clock: PinnedClock, conn: asyncpg.Connection, twilio: FakeTwilio
) -> None:
    """A 429 puts the row back `scheduled` for when the sender's pause ends (Retry-After
    10 ms) after the clock's now, and is no attempt: not due a moment before, sent once the
    clock reaches it, on its first attempt."""
    twilio.fail_next(1, status=429, code=20429, retry_after=0.01)
    lead = await add_lead(conn, rt.config, created_at=chicago(7, 9, 59))
    ack = await add_touch_point(conn, rt.config, lead, step=0, due_at=chicago(7, 10))
    assert await touchpoints.run_once(rt) == {"retry": 1}
    retry = await row(conn, ack)
    assert retry["state"] == "scheduled" and retry["last_error"].startswith("retry: 20429")
    assert clock.now < retry["due_at"] <= clock.now + dt.timedelta(seconds=1)

    clock.now = retry["due_at"] - dt.timedelta(microseconds=1)
    assert await touchpoints.run_once(rt) == {}
    clock.now = retry["due_at"]
    assert await touchpoints.run_once(rt) == {"sent": 1}
    assert (await row(conn, ack))["attempts"] == 1 and len(twilio.messages) == 1


async def test_a_send_whose_lease_was_taken_over_changes_nothing(
    rt: Runtime, conn: asyncpg.Connection, twilio: FakeTwilio
) -> None:
    """Claimed by us, then (our lease expired) by another daemon: our gate finds the row is
    not ours and neither sends nor writes."""
    lead = await add_lead(conn, rt.config, created_at=chicago(7, 9))
    ack = await add_touch_point(conn, rt.config, lead, step=0, due_at=chicago(7, 9))
    [tp] = await claim(rt)
    await conn.execute("UPDATE touch_points SET claimed_by = 'other-daemon' WHERE id = $1", ack)
    assert await Sender(rt).process(tp) == "lost"
    after = await row(conn, ack)
    assert (after["state"], after["claimed_by"], after["gated_at"]) == (
        "sending",
        "other-daemon",
        None,
    )
    assert twilio.messages == [] and await conn.fetch("SELECT * FROM message_attempts") == []
