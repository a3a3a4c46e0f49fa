"""The throttle backoff (issue 11): 429s without Retry-After pause a sender for a delay that
grows only with throttles in a row, each after a pause; the answers to requests already on
their way are the same throttle; an accepted send or a quiet spell resets it. Pure table tests
on explicit times, then the Twilio client against the fake: a burst of concurrent 429s pauses
the sender for the base delay, not the cap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from leadd.backoff import Backoff, ThrottleBackoff
from leadd.providers.twilio import THROTTLE_BACKOFF, TwilioClient
from tests.fakes.twilio import FakeTwilio

EXACT = Backoff(base=1.0, cap=10.0, jitter=0.0)
FROM = "+15125550199"


def test_throttles_in_a_row_grow_the_pause_up_to_the_cap() -> None:
    throttle = ThrottleBackoff(EXACT)
    pauses, now = [], 100.0
    for _ in range(6):
        pause = throttle.throttled(throttle.round, now)
        assert pause is not None
        pauses.append(pause)
        now += pause + 0.1  # the next request goes once the pause is over
    assert pauses == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_answers_to_requests_already_on_their_way_are_the_same_throttle() -> None:
    """Twenty requests left together; the first 429 pauses the sender, the nineteen others
    (sent in the same round) change nothing: the next round starts from the second step."""
    throttle = ThrottleBackoff(EXACT)
    sent_in = throttle.round
    assert throttle.throttled(sent_in, 100.0) == 1.0
    assert [throttle.throttled(sent_in, 100.01) for _ in range(19)] == [None] * 19
    assert throttle.level == 1
    assert throttle.throttled(throttle.round, 101.1) == 2.0


def test_an_accepted_send_resets_the_pause_to_its_base() -> None:
    throttle = ThrottleBackoff(EXACT)
    now = 0.0
    for _ in range(4):
        pause = throttle.throttled(throttle.round, now)
        assert pause is not None
        now += pause + 0.1
    stale = throttle.round - 1  # a request sent before the last pause, still on its way
    throttle.accepted()
    assert throttle.throttled(stale, now) is None  # its 429 does not pause again
    assert throttle.throttled(throttle.round, now) == 1.0


def test_a_quiet_spell_forgets_an_old_storm() -> None:
    """No send in between (nothing to accept), but no throttle either for more than twice
    the last pause: the storm that grew it is over, and the next throttle starts again."""
    throttle = ThrottleBackoff(EXACT)
    assert throttle.throttled(throttle.round, 0.0) == 1.0
    assert throttle.throttled(throttle.round, 1.5) == 2.0  # right after the pause: in a row
    assert throttle.throttled(throttle.round, 3.6) == 4.0
    assert throttle.throttled(throttle.round, 3.6 + 8.1) == 1.0  # > 2 x 4 s later


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as f:
        yield f


async def test_a_burst_of_concurrent_429s_pauses_the_sender_once_for_the_base_delay(
    fake: FakeTwilio,
) -> None:
    """Twenty sends in flight together are all answered 429 without Retry-After: the sender
    pauses about one second (the first step), not the ten-second cap that counting each 429
    as one more throttle reached; and the send after the pause goes through and resets it."""
    fake.delay = 0.2  # every answer comes once all twenty requests have left
    fake.fail_next(20, status=429, code=20429, retry_after=None)
    async with aiohttp.ClientSession() as session:
        client = TwilioClient(
            session,
            base_url=fake.url,
            account_sid=fake.account_sid,
            auth_token=fake.auth_token,
            messages_per_second=1000,
        )
        results = await asyncio.gather(
            *(
                client.send_sms(
                    to=f"+1512555{1000 + i}", from_=FROM, body="x", status_callback=None
                )
                for i in range(20)
            )
        )
        assert {(r.outcome, r.http_status, r.throttled) for r in results if r} == {
            ("retry", 429, True)
        }
        paused = client.paused_for(FROM)
        assert 0 < paused <= THROTTLE_BACKOFF.base * (1 + THROTTLE_BACKOFF.jitter)
        assert client.throttle(FROM).level == 1
        fake.delay = 0.0
        after = await client.send_sms(to="+15125552000", from_=FROM, body="y", status_callback=None)
        assert after is not None and after.outcome == "sent"
        assert client.throttle(FROM).level == 0
    assert [m["body"] for m in fake.messages] == ["y"]
