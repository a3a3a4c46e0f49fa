"""RateLimiter: token bucket, server-requested pauses and their cap, with a fake clock."""

from __future__ import annotations

import pytest

from leadd.ratelimit import RateLimiter


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
