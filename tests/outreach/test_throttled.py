"""Throttles at the row (issue 11): a send Twilio answered "slow down" (429 without
Retry-After) and did not take waits for the sender's pause, which resets once sends go
through, not for a backoff of its own; and a throttle is not an attempt, so a storm longer
than max_attempts delays the message without failing it."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from leadd.backoff import Backoff
from leadd.config import Config
from leadd.loops import touchpoints
from leadd.providers import twilio as twilio_module
from leadd.runtime import Runtime
from tests.e2e.outreach_support import SMS_FROM, PinnedClock
from tests.fakes.twilio import FakeTwilio
from tests.outreach.support import add_lead, add_touch_point, chicago, config, row

pytestmark = pytest.mark.timeout(30)

STORM = 5  # 429s in a row, more than max_attempts


@pytest.fixture
def cfg(database_url: str, twilio: FakeTwilio) -> Config:
    # A retry backoff of its own would be 30 s and more; two attempts at most.
    tp = {"retry_base": "30s", "retry_cap": "1h", "max_attempts": 2}
    return config(database_url, twilio, touchpoints=tp)


async def test_a_429_storm_longer_than_max_attempts_delays_but_never_fails_the_message(
    rt: Runtime,
    clock: PinnedClock,
    conn: asyncpg.Connection,
    twilio: FakeTwilio,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each bare 429 grows the sender's pause (shrunk here to 50 ms doubling to 200 ms so
    the test does not wait seconds); each time the row is due when that pause ends, with no
    attempt counted. After the storm the message goes on its first attempt, and the
    sender's backoff is back at its base."""
    monkeypatch.setattr(twilio_module, "THROTTLE_BACKOFF", Backoff(base=0.05, cap=0.2))
    twilio.fail_next(STORM, status=429, code=20429, retry_after=None)
    lead = await add_lead(conn, rt.config, created_at=chicago(7, 9, 59))
    ack = await add_touch_point(conn, rt.config, lead, step=0, due_at=chicago(7, 10))
    for _ in range(STORM):
        assert await touchpoints.run_once(rt) == {"retry": 1}
        waiting = await row(conn, ack)
        assert (waiting["state"], waiting["attempts"]) == ("scheduled", 0)
        assert waiting["last_error"] == "retry: 20429 Too Many Requests"
        assert clock.now < waiting["due_at"] <= clock.now + dt.timedelta(seconds=1)
        clock.now = waiting["due_at"]
    assert await touchpoints.run_once(rt) == {"sent": 1}
    sent = await row(conn, ack)
    assert (sent["state"], sent["attempts"]) == ("sent", 1)
    assert len(twilio.messages) == 1
    assert rt.twilio.throttle(SMS_FROM).level == 0
    outcomes = await conn.fetch("SELECT outcome FROM message_attempts ORDER BY id")
    assert [o["outcome"] for o in outcomes] == ["retry"] * STORM + ["sent"]
