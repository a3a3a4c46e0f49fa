"""Outreach end to end: the real daemon (in-process) against fake Twilio and SendGrid on local
sockets. Time is controlled by running touch-point cycles on a pinned clock (what is due is
decided on that clock), never by sleeping."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from leadd import chatlinks as links
from tests.e2e.outreach_support import (
    PHONE,
    SMS_FROM,
    PinnedClock,
    cycle,
    order_payload,
    outreach_config,
    post_order,
    sql,
    touch_points,
)
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.twilio import FakeTwilio
from tests.helpers import base_url, running_daemon, wait_for

CHICAGO = ZoneInfo("America/Chicago")


def at_chicago(hour: int, minute: int = 0, days: int = 1) -> dt.datetime:
    """A fixed instant `days` from today at hour:minute Chicago time (a Wednesday-proof pick
    is not needed: the default quiet hours hold every day and IL has no state rule)."""
    day = dt.datetime.now(CHICAGO).date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour, minute), CHICAGO).astimezone(dt.UTC)


# --------------------------------------------------------------------------- speed to lead


async def test_webhook_to_first_sms_under_one_second(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """The issue's headline: a new lead is texted within a second of the webhook, because
    the webhook wakes the touch-point loop in-process (the 30 s interval never elapses)."""
    cfg = outreach_config(database_url, twilio)
    async with running_daemon(cfg) as daemon:
        await wait_for(lambda: daemon.supervisor.tasks["touchpoints"].heartbeat is not None)
        posted = time.monotonic()
        lead_id = await post_order(http, base_url(daemon), order_payload())
        await wait_for(lambda: twilio.messages, timeout=5, interval=0.005)
        elapsed = twilio.messages[0]["received_at"] - posted
        assert elapsed < 1.0, f"first SMS took {elapsed:.3f}s"
        msg = twilio.messages[0]
        assert msg["to"] == PHONE and msg["from"] == SMS_FROM
        assert msg["body"] == "Hi Jamie, thanks from Acme Auto Care Downtown!"
        assert msg["status_callback"] == "https://leads.example.com/webhooks/twilio/status"

        async def contacted() -> bool:
            rows = await sql(database_url, "SELECT state FROM leads")
            return rows[0]["state"] == "contacted"

        await wait_for(contacted)
        [tp] = await touch_points(database_url, lead_id)
        assert tp["state"] == "sent" and tp["provider_id"] == msg["sid"]
        [attempt] = await sql(database_url, "SELECT * FROM message_attempts")
        assert attempt["provider"] == "twilio" and attempt["http_status"] == 201
        assert attempt["provider_id"] == msg["sid"] and attempt["latency_ms"] > 0
        assert attempt["dry_run"] is False and attempt["outcome"] == "sent"
        [session] = await sql(database_url, "SELECT * FROM chat_sessions")
        assert "token" not in session and len(session["token_hash"]) == 32  # sha256 only
        assert len(twilio.messages) == 1


# --------------------------------------------------------------------------- sequences


THREE_STEPS = {
    "default": [
        {
            "name": "ack",
            "channel": "sms",
            "delay": "0s",
            "after": "created",
            "template": "Hi {{ customer.first_name }}, thanks! {{ location.name }}",
        },
        {
            "name": "estimate",
            "channel": "email",
            "delay": "1h",
            "after": "previous",
            "subject": "Your estimate at {{ location.name }}",
            "template": (
                "Hi {{ customer.first_name }}, for your {{ vehicle.description }}: "
                "{{ services.list }} (total {{ services.total }}). "
                "Today: {{ location.hours_today }}. Call {{ location.phone }}. "
                "Chat: {{ chat.link }} Unsubscribe: {{ unsubscribe.link }}"
            ),
        },
        {
            "name": "day1",
            "channel": "sms",
            "delay": "1d",
            "after": "previous",
            "only_in_states": ["new", "contacted"],
            "template": "Still want that {{ services.names }}? {{ location.phone }}",
        },
    ]
}


async def test_three_step_sequence_across_controlled_time(
    database_url: str,
    twilio: FakeTwilio,
    sendgrid: FakeSendGrid,
    http: aiohttp.ClientSession,
) -> None:
    """SMS at once, e-mail an hour later, SMS a day after that: each goes out only when its
    due_at arrives, with templates filled from customer, vehicle, catalog prices, location
    and chat link; the e-mail carries the address and a working unsubscribe link."""
    cfg = outreach_config(
        database_url,
        twilio,
        sendgrid,
        sequences=THREE_STEPS,
        touchpoints={"interval": "1h"},
        chat={"base_url": "https://chat.acme.example/c"},
    )
    async with running_daemon(cfg) as daemon:
        lead_id = await post_order(
            http, base_url(daemon), order_payload(email="Jamie.Rivera@Example.com")
        )
        await wait_for(lambda: twilio.messages)
        await wait_for(lambda: _states(database_url, lead_id, ["sent", "scheduled", "scheduled"]))
        ack, mail, day1 = await touch_points(database_url, lead_id)
        # Touch points were written with the lead, laid out from its creation time.
        assert mail["due_at"] - ack["due_at"] == dt.timedelta(hours=1)
        assert day1["due_at"] - mail["due_at"] == dt.timedelta(days=1)

        clock = PinnedClock(mail["due_at"] - dt.timedelta(seconds=1))
        assert await cycle(daemon, clock=clock) == {}  # nothing due yet
        assert sendgrid.mails == [] and len(twilio.messages) == 1

        clock.now = mail["due_at"]  # the hour has passed
        counts = await cycle(daemon, clock=clock)
        assert counts["sent"] == 1
        [sent] = sendgrid.mails
        body = sent["body"]
        personalization = body["personalizations"][0]
        assert personalization["to"] == [
            {"email": "jamie.rivera@example.com", "name": "Jamie Rivera"}
        ]
        assert personalization["custom_args"] == {
            "lead_id": lead_id,
            "touch_point_id": str(mail["id"]),
        }
        assert body["subject"] == "Your estimate at Acme Auto Care Downtown"
        text = body["content"][0]["value"]
        # The chat token is derived from the chat secret; the database has only its hash. The
        # unsubscribe link has a token of its own (0004).
        token = links.chat_token(
            daemon.config.chat.secret, daemon.config.tenant.id, uuid.UUID(lead_id)
        )
        [session] = await sql(
            database_url, "SELECT token_hash, unsubscribe_token FROM chat_sessions"
        )
        assert session["token_hash"] == links.token_hash(token)
        unsubscribe = f"https://leads.example.com/unsubscribe/{session['unsubscribe_token']}"
        assert token not in unsubscribe
        assert "for your 2016 Honda Civic: Oil change ($49.99) (total $49.99)" in text
        assert (
            "Today: 8:00 AM–6:00 PM" in text
            or "Today: 9:00 AM–1:00 PM" in text
            or "Today: closed" in text
        )
        assert f"Chat: https://chat.acme.example/c/{token}" in text
        assert "100 Main St, Austin, TX 78701" in text  # the physical address, always
        assert f"Unsubscribe: {unsubscribe}" in text
        assert body["headers"]["List-Unsubscribe"] == f"<{unsubscribe}>"
        assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        [mail_row] = await sql(database_url, "SELECT * FROM touch_points WHERE id = $1", mail["id"])
        assert mail_row["state"] == "sent" and mail_row["provider_id"] == sent["message_id"]

        clock.now = day1["due_at"] - dt.timedelta(seconds=1)
        assert await cycle(daemon, clock=clock) == {}
        # The day after, at 10:00 in Chicago: due, and inside the recipient's window.
        clock.now = at_chicago(10, days=2)
        assert clock.now >= day1["due_at"]
        assert (await cycle(daemon, clock=clock))["sent"] == 1
        assert [m["body"] for m in twilio.messages] == [
            "Hi Jamie, thanks! Acme Auto Care Downtown",
            "Still want that Oil change? +15125550100",
        ]
        assert await cycle(daemon, clock=clock) == {}
        assert len(twilio.messages) == 2 and len(sendgrid.mails) == 1


async def _states(url: str, lead_id: str, expected: list[str]) -> bool:
    return [r["state"] for r in await touch_points(url, lead_id)] == expected


async def _make_due(url: str, tp_id: int) -> None:
    await sql(url, "UPDATE touch_points SET due_at = now() WHERE id = $1", tp_id)


# --------------------------------------------------------------------------- quiet hours

FOLLOW_UP = {
    "default": [
        {"name": "ack", "channel": "sms", "delay": "0s", "after": "created", "template": "Hi!"},
        {
            "name": "later",
            "channel": "sms",
            "delay": "2h",
            "after": "created",
            "template": "Still there?",
        },
    ]
}


def _next_weekday(weekday: int) -> dt.date:
    today = dt.datetime.now(CHICAGO).date() + dt.timedelta(days=1)
    return today + dt.timedelta(days=(weekday - today.weekday()) % 7)


@pytest.mark.parametrize(
    ("phone", "local_now", "opening"),
    [
        # 22:30 in Chicago (IL number): the follow-up waits for 09:00 the next morning.
        ("+13125550123", (2, dt.time(22, 30)), (3, dt.time(9, 0))),
        # Texas (512) on a Sunday at 10:00: state law keeps Sundays closed until noon.
        ("+15125550123", (6, dt.time(10, 0)), (6, dt.time(12, 0))),
    ],
    ids=["chicago-22:30", "texas-sunday"],
)
async def test_follow_up_outside_quiet_hours_waits_for_the_window(
    database_url: str,
    twilio: FakeTwilio,
    http: aiohttp.ClientSession,
    phone: str,
    local_now: tuple[int, dt.time],
    opening: tuple[int, dt.time],
) -> None:
    """Outside the recipient's window the message is deferred to the opening minute (not
    dropped, not counted as an attempt) and goes out when that minute comes."""
    cfg = outreach_config(database_url, twilio, sequences=FOLLOW_UP, touchpoints={"interval": "1h"})
    async with running_daemon(cfg) as daemon:
        lead_id = await post_order(http, base_url(daemon), order_payload(phone=phone))
        # The first acknowledgement is exempt (first_touch_immediate), whatever the hour.
        await wait_for(lambda: twilio.messages)
        await wait_for(lambda: _states(database_url, lead_id, ["sent", "scheduled"]))
        _, later = await touch_points(database_url, lead_id)
        night = dt.datetime.combine(_next_weekday(local_now[0]), local_now[1], CHICAGO)
        open_at = dt.datetime.combine(_next_weekday(opening[0]), opening[1], CHICAGO)
        if open_at <= night:
            open_at += dt.timedelta(days=7)

        clock = PinnedClock(night.astimezone(dt.UTC))
        assert clock.now >= later["due_at"]
        assert (await cycle(daemon, clock=clock))["deferred"] == 1
        [row] = await sql(database_url, "SELECT * FROM touch_points WHERE id = $1", later["id"])
        assert row["state"] == "scheduled"
        assert row["due_at"] == open_at.astimezone(dt.UTC)
        assert row["attempts"] == 0  # waiting is not a failed attempt
        assert len(twilio.messages) == 1

        # One minute early: not due yet; and made due, still deferred to the same opening.
        clock.now = open_at.astimezone(dt.UTC) - dt.timedelta(minutes=1)
        assert await cycle(daemon, clock=clock) == {}
        await _make_due(database_url, later["id"])
        assert (await cycle(daemon, clock=clock))["deferred"] == 1
        [row] = await sql(
            database_url, "SELECT due_at FROM touch_points WHERE id = $1", later["id"]
        )
        assert row["due_at"] == open_at.astimezone(dt.UTC)

        clock.now = open_at.astimezone(dt.UTC)
        assert (await cycle(daemon, clock=clock))["sent"] == 1
        assert [m["body"] for m in twilio.messages] == ["Hi!", "Still there?"]


async def test_first_acknowledgement_is_deferred_at_night_when_configured(
    database_url: str,
    twilio: FakeTwilio,
    http: aiohttp.ClientSession,
) -> None:
    """first_touch_immediate: false puts the instant acknowledgement under quiet hours too."""
    night = at_chicago(23, 15)
    cfg = outreach_config(
        database_url,
        twilio,
        touchpoints={"interval": "1h"},
        compliance={"first_touch_immediate": False},
    )
    async with running_daemon(cfg, clock=PinnedClock(night)) as daemon:
        lead_id = await post_order(http, base_url(daemon), order_payload(), at=night)

        async def deferred() -> bool:
            [tp] = await touch_points(database_url, lead_id)
            return tp["state"] == "scheduled" and tp["due_at"] == at_chicago(9, 0, days=2)

        await wait_for(deferred)
        assert await cycle(daemon) == {}  # not due before 09:00
        assert twilio.messages == []


async def test_a_stalled_first_acknowledgement_waits_for_the_window(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """The acknowledgement may go at any hour only while it is instant: one held up past the
    grace period (here by a 429) obeys quiet hours like any follow-up, never 11 pm."""
    twilio.fail_next(1, status=429, code=20429)
    cfg = outreach_config(database_url, twilio, touchpoints={"interval": "1h"})
    async with running_daemon(cfg) as daemon:
        lead_id = await post_order(http, base_url(daemon), order_payload())

        async def retry_scheduled() -> bool:
            [tp] = await touch_points(database_url, lead_id)
            return tp["state"] == "scheduled" and (tp["last_error"] or "").startswith("retry")

        await wait_for(retry_scheduled)
        [tp] = await touch_points(database_url, lead_id)
        clock = PinnedClock(at_chicago(23, 15))
        assert clock.now >= tp["due_at"]  # its retry is due by then
        assert (await cycle(daemon, clock=clock))["deferred"] == 1
        [tp] = await touch_points(database_url, lead_id)
        assert tp["state"] == "scheduled" and tp["due_at"] == at_chicago(9, 0, days=2)
        assert twilio.messages == []


async def test_frequency_cap_defers_the_fourth_sms_in_24_hours(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """Three SMS per phone per 24 h: the fourth waits until the first ages out."""
    steps = [
        {
            "name": f"s{i}",
            "channel": "sms",
            "delay": "0s",
            "after": "created",
            "template": f"Message {i}",
        }
        for i in range(4)
    ]
    cfg = outreach_config(
        database_url,
        twilio,
        sequences={"default": steps},
        touchpoints={"interval": "1h"},
        compliance={"quiet_hours": "00:00-24:00"},
    )
    async with running_daemon(cfg) as daemon:
        lead_id = await post_order(http, base_url(daemon), order_payload())
        await wait_for(lambda: twilio.messages)

        async def settled() -> bool:
            states = sorted(r["state"] for r in await touch_points(database_url, lead_id))
            return states == ["scheduled", "sent", "sent", "sent"]

        await wait_for(settled)
        rows = await touch_points(database_url, lead_id)
        assert len(twilio.messages) == 3
        first_sent = min(r["sent_at"] for r in rows if r["state"] == "sent")
        [waiting] = [r for r in rows if r["state"] == "scheduled"]
        assert waiting["due_at"] == first_sent + dt.timedelta(hours=24)
        assert waiting["last_error"].startswith("deferred")


# --------------------------------------------------------------------------- bad input


async def test_no_reachable_channel_and_template_error_are_recorded_and_the_loop_goes_on(
    database_url: str,
    twilio: FakeTwilio,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lead without a phone: its SMS step is skipped and the reason is on the lead. A
    rendering failure: the touch point fails, the lead says why, and other leads still go."""
    cfg = outreach_config(database_url, twilio, touchpoints={"interval": "1h"})
    async with running_daemon(cfg) as daemon:
        no_phone = await post_order(
            http, base_url(daemon), order_payload(phone=None, email="a@b.example")
        )
        await wait_for(lambda: _states(database_url, no_phone, ["skipped"]))
        [lead] = await sql(
            database_url, "SELECT last_error FROM leads WHERE id = $1::uuid", no_phone
        )
        assert lead["last_error"] == "ack: no phone for this lead"

        import leadd.templates

        real = leadd.templates.build_context
        broken_phone = "+13125550188"

        def flaky(**kw: object) -> object:
            if kw["customer"] == {"first_name": "Broken", "last_name": "Rivera"}:
                raise TypeError("expected a price as a number, got '12.50'")
            return real(**kw)  # type: ignore[arg-type]

        monkeypatch.setattr(leadd.templates, "build_context", flaky)
        bad = await post_order(
            http, base_url(daemon), order_payload(phone=broken_phone, first_name="Broken")
        )
        good = await post_order(http, base_url(daemon), order_payload(phone="+13125550177"))
        await wait_for(lambda: _states(database_url, bad, ["failed"]))
        await wait_for(lambda: _states(database_url, good, ["sent"]))
        [lead] = await sql(database_url, "SELECT last_error FROM leads WHERE id = $1::uuid", bad)
        assert lead["last_error"].startswith("ack: template error: expected a price")
        assert [m["to"] for m in twilio.messages] == ["+13125550177"]


# --------------------------------------------------------------------------- provider errors

TWO_SMS = {
    "default": [
        {"name": "ack", "channel": "sms", "delay": "0s", "after": "created", "template": "Hi!"},
        {
            "name": "later",
            "channel": "sms",
            "delay": "1d",
            "after": "created",
            "template": "Hello?",
        },
    ]
}


async def test_21610_opts_the_phone_out_and_cancels_its_sms(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """Twilio says the recipient unsubscribed: record the opt-out, fail this message and
    cancel every pending SMS to that phone; never send to it again."""
    twilio.opted_out.add(PHONE)
    cfg = outreach_config(database_url, twilio, sequences=TWO_SMS, touchpoints={"interval": "1h"})
    async with running_daemon(cfg) as daemon:
        lead_id = await post_order(http, base_url(daemon), order_payload())
        await wait_for(lambda: _states(database_url, lead_id, ["failed", "cancelled"]))
        [opt] = await sql(database_url, "SELECT * FROM contact_optouts")
        assert (opt["channel"], opt["address"], opt["reason"]) == ("sms", PHONE, "twilio_21610")
        [attempt] = await sql(database_url, "SELECT * FROM message_attempts")
        assert (attempt["http_status"], attempt["error_code"]) == (400, "21610")
        assert twilio.messages == []


async def test_invalid_number_is_permanent_and_recorded_on_the_lead(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    twilio.invalid.add(PHONE)
    cfg = outreach_config(database_url, twilio, sequences=TWO_SMS, touchpoints={"interval": "1h"})
    async with running_daemon(cfg) as daemon:
        lead_id = await post_order(http, base_url(daemon), order_payload())
        await wait_for(lambda: _states(database_url, lead_id, ["failed", "cancelled"]))
        [lead] = await sql(database_url, "SELECT last_error FROM leads")
        assert lead["last_error"].startswith("sms: undeliverable number (21211")
        assert await sql(database_url, "SELECT * FROM contact_optouts") == []
        assert len(await sql(database_url, "SELECT * FROM message_attempts")) == 1


async def test_429_storm_then_every_message_sent_exactly_once(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """A burst of 429s (with Retry-After) delays messages; none is dropped or doubled."""
    leads_n = 12
    twilio.fail_next(25, status=429, code=20429, retry_after=0.2)
    cfg = outreach_config(
        database_url,
        twilio,
        touchpoints={"interval": "200ms", "max_attempts": 30, "concurrency": 6},
    )
    phones = [f"+1312555{1000 + i}" for i in range(leads_n)]
    async with running_daemon(cfg) as daemon:
        for phone in phones:
            await post_order(http, base_url(daemon), order_payload(phone=phone))

        async def all_sent() -> bool:
            rows = await sql(database_url, "SELECT state FROM touch_points")
            return len(rows) == leads_n and all(r["state"] == "sent" for r in rows)

        await wait_for(all_sent, timeout=30)
    assert sorted(m["to"] for m in twilio.messages) == sorted(phones)
    attempts = await sql(
        database_url, "SELECT outcome, http_status, error_code FROM message_attempts"
    )
    retries = [a for a in attempts if a["outcome"] == "retry"]
    assert len(retries) == 25 and {(a["http_status"], a["error_code"]) for a in retries} == {
        (429, "20429")
    }
    assert sum(a["outcome"] == "sent" for a in attempts) == leads_n


async def test_server_errors_then_capped_attempts_end_in_failed(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """5xx is ambiguous (Twilio may have created it): each retry looks the message up first;
    after max_attempts the touch point is failed, and nothing was sent twice."""
    twilio.fail_next(100, status=503, code=None)
    cfg = outreach_config(
        database_url,
        twilio,
        touchpoints={"interval": "100ms", "max_attempts": 3, "lease": "1s"},
    )
    async with running_daemon(cfg) as daemon:
        lead_id = await post_order(http, base_url(daemon), order_payload())
        await wait_for(lambda: _states(database_url, lead_id, ["failed"]), timeout=20)
    [tp] = await touch_points(database_url, lead_id)
    assert tp["attempts"] == 4 and tp["last_error"] == "gave up after 3 attempts"
    attempts = await sql(database_url, "SELECT http_status FROM message_attempts")
    assert [a["http_status"] for a in attempts] == [503, 503, 503]
    assert len(twilio.list_requests) >= 3  # reconciled before every resend
    assert twilio.messages == []


async def test_sendgrid_429_waits_for_reset_and_4xx_is_permanent(
    database_url: str,
    twilio: FakeTwilio,
    sendgrid: FakeSendGrid,
    http: aiohttp.ClientSession,
) -> None:
    email_only = {
        "default": [
            {
                "name": "mail",
                "channel": "email",
                "delay": "0s",
                "after": "created",
                "subject": "Hi",
                "template": "Hello {{ customer.first_name }}",
            }
        ]
    }
    sendgrid.fail_next(1, status=429, reset_in=2)  # X-RateLimit-Reset: 1-2 s from now
    cfg = outreach_config(
        database_url, twilio, sendgrid, sequences=email_only, touchpoints={"interval": "100ms"}
    )
    async with running_daemon(cfg) as daemon:
        first = await post_order(http, base_url(daemon), order_payload(email="one@example.com"))
        await wait_for(lambda: _states(database_url, first, ["sent"]), timeout=10)
        assert len(sendgrid.mails) == 1
        sendgrid.fail_next(1, status=400, message="Invalid from address")
        second = await post_order(
            http, base_url(daemon), order_payload(phone="+13125550166", email="two@example.com")
        )
        await wait_for(lambda: _states(database_url, second, ["failed"]))
    attempts = await sql(
        database_url,
        "SELECT http_status, outcome, provider_id, created_at FROM message_attempts ORDER BY id",
    )
    assert attempts[1]["created_at"] - attempts[0]["created_at"] >= dt.timedelta(seconds=1)
    assert [(a["http_status"], a["outcome"]) for a in attempts] == [
        (429, "retry"),
        (202, "sent"),
        (400, "failed"),
    ]
    assert attempts[1]["provider_id"] == sendgrid.mails[0]["message_id"]
    assert len(sendgrid.mails) == 1
