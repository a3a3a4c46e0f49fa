"""RateLimiter: token bucket, server-requested pauses and their cap, with a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from leadd.ratelimit import NORMAL, URGENT, RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pause_is_capped_and_never_shortens_a_longer_one() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1.0, clock=clock, max_pause=60.0)
    limiter.pause(86400)
    assert limiter.paused_for() == 60.0
    limiter.pause(5)  # a shorter answer does not cut the pause short
    assert limiter.paused_for() == 60.0
    clock.now += 59.5
    assert limiter.paused_for() == pytest.approx(0.5)
    clock.now += 1
    assert limiter.paused_for() == 0.0


def test_pause_without_cap_and_negative_values() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1.0, clock=clock)
    limiter.pause(-3)
    assert limiter.paused_for() == 0.0
    limiter.pause(300)
    assert limiter.paused_for() == 300.0
    with pytest.raises(ValueError):
        RateLimiter(1.0, max_pause=0)


async def test_waiters_are_served_most_urgent_first_then_in_arrival_order() -> None:
    """With the bucket empty, an urgent caller (a customer lookup an acknowledgement waits
    for) that arrives after two normal ones still gets the next token."""
    limiter = RateLimiter(50.0)
    await limiter.acquire()  # the one token: everyone below waits
    served: list[str] = []

    async def take(name: str, priority: int) -> None:
        await limiter.acquire(priority)
        served.append(name)

    tasks = [asyncio.create_task(take("a", NORMAL)), asyncio.create_task(take("b", NORMAL))]
    await asyncio.sleep(0)  # a and b are queued first
    tasks.append(asyncio.create_task(take("urgent", URGENT)))
    await asyncio.gather(*tasks)
    assert served == ["urgent", "a", "b"]


async def test_a_cancelled_waiter_takes_no_token_and_does_not_block_the_queue() -> None:
    limiter = RateLimiter(50.0)
    await limiter.acquire()
    gone = asyncio.create_task(limiter.acquire(URGENT))
    await asyncio.sleep(0)
    assert limiter.waiting() == 1
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    await asyncio.wait_for(limiter.acquire(NORMAL), timeout=5)
    assert limiter.waiting() == 0


async def test_a_pause_holds_every_waiter_then_serves_them_by_priority() -> None:
    """A server's "slow down" (pause) holds back callers already queued, urgent ones too;
    when it ends they are served urgent first. Nobody gets a token during the pause."""
    limiter = RateLimiter(1000.0)
    await limiter.acquire()  # the one token: the callers below queue
    limiter.pause(0.05)
    served: list[tuple[str, float]] = []  # (who, pause left when served)

    async def take(name: str, priority: int) -> None:
        await limiter.acquire(priority)
        served.append((name, limiter.paused_for()))

    tasks = [asyncio.create_task(take("normal", NORMAL))]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(take("urgent", URGENT)))
    await asyncio.gather(*tasks)
    assert served == [("urgent", 0.0), ("normal", 0.0)]


async def test_a_pause_during_a_wait_holds_the_next_grant_too() -> None:
    """A 429 arriving while callers wait for the next token (the pump asleep) still holds
    them: the token is not handed out until the pause is over."""
    limiter = RateLimiter(50.0)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire(URGENT))
    await asyncio.sleep(0)
    assert limiter.waiting() == 1
    limiter.pause(0.1)
    await waiter
    assert limiter.paused_for() == 0.0
