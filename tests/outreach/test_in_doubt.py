"""Fast recovery of ambiguous sends (issue 11): a send that ended in a 5xx or a timeout is looked
up in Twilio's message list `reconcile_delay` after the answer, by the running send loop, not
once a lease or the next interval has passed. The lease here is 600 s and the interval an hour,
so only the early lookup can finish these tests within their timeout. What happens next is the
reconciler's as always: found means recorded (never resent), not found means resent once, after
the retry backoff and through the gate (a STOP meanwhile cancels it)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

import asyncpg
import pytest

from leadd.config import Config
from leadd.conversations import inbound
from leadd.loops import touchpoints
from leadd.outreach import reconcile
from leadd.providers.twilio import TwilioClient
from leadd.runtime import Runtime
from leadd.store.outreach_models import TouchPoint
from tests.e2e.outreach_support import PinnedClock
from tests.fakes.twilio import FakeTwilio
from tests.outreach.support import PHONE, add_lead, add_touch_point, config, row

pytestmark = pytest.mark.timeout(30)

ACK = "Hi Jamie, thanks from Acme Auto Care Downtown!"
SLOW = {"lease": "600s", "interval": "1h", "retry_base": "30s", "retry_cap": "1h"}


@pytest.fixture
def cfg(database_url: str, twilio: FakeTwilio) -> Config:
    return config(database_url, twilio, touchpoints=SLOW | {"reconcile_delay": "200ms"})


@pytest.fixture
def reconciled(monkeypatch: pytest.MonkeyPatch) -> asyncio.Queue[str]:
    """What each reconciliation of a row ended in, as it ends (the tests wait on it)."""
    outcomes: asyncio.Queue[str] = asyncio.Queue()
    real = reconcile.reconcile

    async def watched(rt: Runtime, tp: TouchPoint) -> str:
        outcome = await real(rt, tp)
        outcomes.put_nowait(outcome)
        return outcome

    monkeypatch.setattr(reconcile, "reconcile", watched)
    return outcomes


class SendLoop:
    """The send loop running as the daemon runs it, until the test leaves the block."""

    def __init__(self, rt: Runtime) -> None:
        self.rt, self.shutdown, self.wake = rt, asyncio.Event(), asyncio.Event()

    async def __aenter__(self) -> SendLoop:
        self.task = asyncio.create_task(
            touchpoints.run(self.rt, shutdown=self.shutdown, wake_event=self.wake, beat=_beat)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.shutdown.set()
        await self.task  # a graceful stop: a send in flight is recorded first


def _beat() -> None:
    pass


async def acknowledgement(conn: asyncpg.Connection, rt: Runtime, clock: PinnedClock) -> int:
    lead = await add_lead(conn, rt.config, created_at=clock.now - dt.timedelta(seconds=5))
    return await add_touch_point(conn, rt.config, lead, step=0, due_at=clock.now)


async def history(conn: asyncpg.Connection, tp_id: int) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        "SELECT outcome, http_status, error_code, provider_id FROM message_attempts"
        " WHERE touch_point_id = $1 ORDER BY id",
        tp_id,
    )
    return [tuple(r) for r in rows]


async def test_a_500_for_a_message_twilio_took_is_found_in_seconds_and_never_resent(
    rt: Runtime,
    clock: PinnedClock,
    conn: asyncpg.Connection,
    twilio: FakeTwilio,
    reconciled: asyncio.Queue[str],
) -> None:
    """Twilio creates the message and answers 500. The loop looks it up 200 ms later (lease
    600 s, interval 1 h), finds it and records it: one message, one `contacted`, nothing left
    to resend however far the clock moves."""
    twilio.fail_next(1, status=500, code=20500, accept=True)
    ack = await acknowledgement(conn, rt, clock)
    async with SendLoop(rt):
        assert await reconciled.get() == "reconciled"
    [message] = twilio.messages
    assert message["body"] == ACK
    sent = await row(conn, ack)
    assert (sent["state"], sent["provider_id"]) == ("sent", message["sid"])
    assert await history(conn, ack) == [
        ("retry", 500, "20500", None),
        ("reconciled", None, None, message["sid"]),
    ]
    lead = sent["lead_id"]
    events = await conn.fetch("SELECT to_state FROM lead_events WHERE lead_id = $1", lead)
    assert [e["to_state"] for e in events] == ["contacted"]
    assert await conn.fetchval("SELECT count(*) FROM chat_messages") == 1

    clock.now += dt.timedelta(days=1)  # long past any retry backoff: still nothing to send
    assert await touchpoints.run_once(rt) == {}
    assert len(twilio.messages) == 1


async def test_a_timeout_that_created_nothing_is_resent_once_after_the_lookup(
    rt: Runtime,
    clock: PinnedClock,
    conn: asyncpg.Connection,
    twilio: FakeTwilio,
    reconciled: asyncio.Queue[str],
) -> None:
    """Twilio never answers and creates nothing. The loop looks it up 200 ms after the
    timeout, finds nothing and reschedules it for the end of its retry backoff (30 s on the
    runtime clock), not before; then it is sent once."""
    twilio.hang_next(1)
    async with TwilioClient(
        None,
        base_url=twilio.url,
        account_sid=twilio.account_sid,
        auth_token=twilio.auth_token,
        messages_per_second=1000,
        timeout=0.3,
    ) as impatient:
        rt = dataclasses.replace(rt, twilio=impatient)
        ack = await acknowledgement(conn, rt, clock)
        async with SendLoop(rt):
            assert await reconciled.get() == "rescheduled"
        waiting = await row(conn, ack)
        assert waiting["state"] == "scheduled" and twilio.messages == []
        assert clock.now + dt.timedelta(seconds=20) < waiting["due_at"]
        assert len(twilio.list_requests) >= 1  # looked before resending

        clock.now = waiting["due_at"] - dt.timedelta(microseconds=1)
        assert await touchpoints.run_once(rt) == {}
        clock.now = waiting["due_at"]
        assert await touchpoints.run_once(rt) == {"sent": 1}
    [message] = twilio.messages
    assert [h[:3] for h in await history(conn, ack)] == [
        ("retry", None, "timeout"),
        ("sent", 201, None),
    ]
    sent = await row(conn, ack)
    assert (sent["state"], sent["provider_id"], sent["attempts"]) == ("sent", message["sid"], 2)


async def test_a_stop_while_a_send_waits_for_its_lookup_means_it_is_never_resent(
    rt: Runtime,
    clock: PinnedClock,
    conn: asyncpg.Connection,
    twilio: FakeTwilio,
    reconciled: asyncio.Queue[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twilio answers 500 and created nothing; the customer texts STOP while the send is in
    doubt (here: during its lookup, the latest moment). A STOP cannot cancel a send that may
    have gone, so the row is still `sending`; Twilio does not have it, so it is rescheduled,
    and the gate of that resend cancels it: nothing reaches Twilio."""
    twilio.fail_next(1, status=500, code=20500)
    ack = await acknowledgement(conn, rt, clock)
    states: list[str] = []
    real_find_sent = rt.twilio.find_sent

    async def stop_then_look(**kw: Any) -> str | None:
        await inbound.receive_sms(rt, phone=PHONE, sid="SM" + "5" * 32, body="STOP")
        states.append((await row(conn, ack))["state"])
        sid: str | None = await real_find_sent(**kw)
        return sid

    monkeypatch.setattr(rt.twilio, "find_sent", stop_then_look)
    async with SendLoop(rt):
        assert await reconciled.get() == "rescheduled"
    assert states == ["sending"]
    clock.now = (await row(conn, ack))["due_at"]
    assert await touchpoints.run_once(rt) == {"cancelled": 1}
    cancelled = await row(conn, ack)
    assert (cancelled["state"], cancelled["last_error"]) == ("cancelled", "sms opted out")
    assert twilio.messages == []
    assert [h[0] for h in await history(conn, ack)] == ["retry"]


async def test_a_lookup_due_in_the_middle_of_a_busy_cycle_is_made_beside_it(
    rt: Runtime,
    clock: PinnedClock,
    conn: asyncpg.Connection,
    twilio: FakeTwilio,
    reconciled: asyncio.Queue[str],
) -> None:
    """The loop is busy: a first send is held at Twilio. A second lead's send ends in an
    ambiguous 500 meanwhile; it is looked up after its delay, beside the held send, not
    once the cycle is over."""
    twilio.hold_create = asyncio.Event()
    held = await acknowledgement(conn, rt, clock)
    async with SendLoop(rt) as loop:
        await twilio.wait_messages(1)  # the first send, held at Twilio
        twilio.fail_next(1, status=500, code=20500, accept=True)
        other = await add_lead(
            conn, rt.config, created_at=clock.now - dt.timedelta(seconds=1), phone="+13125550124"
        )
        ambiguous = await add_touch_point(conn, rt.config, other, step=0, due_at=clock.now)
        loop.wake.set()  # as a new lead does
        assert await reconciled.get() == "reconciled"
        assert (await row(conn, held))["state"] == "sending"  # the cycle is still busy
        twilio.hold_create.set()
    assert (await row(conn, ambiguous))["state"] == "sent"
    assert (await row(conn, held))["state"] == "sent"
    assert sorted(m["to"] for m in twilio.messages) == [PHONE, "+13125550124"]


async def test_one_cycle_hands_an_ambiguous_send_over_without_waiting_for_its_lookup(
    rt: Runtime, clock: PinnedClock, conn: asyncpg.Connection, twilio: FakeTwilio
) -> None:
    """A cycle does not wait for the lookup: the row is `sending`, owned by nobody (no
    heartbeat renews it), due to be resent at the end of its retry backoff (30 s, +/-20 %)
    should Twilio not have it."""
    twilio.fail_next(1, status=503, code=None)
    ack = await acknowledgement(conn, rt, clock)
    assert await touchpoints.run_once(rt) == {"retry": 1}
    handed = await row(conn, ack)
    assert (handed["state"], handed["claimed_by"]) == ("sending", None)
    backoff = handed["due_at"] - clock.now
    assert dt.timedelta(seconds=24) <= backoff <= dt.timedelta(seconds=36)
