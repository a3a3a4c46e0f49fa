"""Retry delays: one exponential, jittered policy shared by the supervisor and every client,
and the throttle backoff that grows it only with throttles in a row."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """`base * 2**attempt`, capped, with full-range +/-`jitter` (a fraction of the delay).

    attempt counts from 0: the first retry waits about `base` seconds.
    """

    base: float = 1.0
    cap: float = 60.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        raw = min(self.cap, self.base * (2 ** max(0, attempt)))
        r: float = (rng or random).uniform(-self.jitter, self.jitter)
        return float(max(0.0, min(self.cap, raw * (1 + r))))


class ThrottleBackoff:
    """A client's (or one sender's) backoff on "slow down" answers without Retry-After.

    It grows only with throttles in a row that each came after the sender's previous pause:
    every request already on its way when the sender was paused (up to the caller's concurrency)
    is answered 429 too, and those answers are the same throttle, not twenty more. An accepted
    send resets it, and so does a quiet spell (no throttle for twice the last pause): a burst
    of 429s followed by recovery never leaves every later send waiting for a grown pause.
    Times are monotonic seconds, passed in.
    """

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.level = 0  # throttles in a row, each after a pause
        self.round = 0  # one per pause imposed; a request carries the round it was sent in
        self._last = 0.0
        self._pause = 0.0

    def throttled(self, sent_in: int, now: float) -> float | None:
        """The pause a throttle answer to a request sent in round `sent_in` imposes, or None:
        the sender was paused since that request left (same throttle, already paid for)."""
        if sent_in != self.round:
            return None
        if self.level and now - self._last > 2 * self._pause:
            self.level = 0  # the storm that grew it is over
        pause = self.backoff.delay(self.level)
        self.level += 1
        self.round += 1
        self._last, self._pause = now, pause
        return pause

    def accepted(self) -> None:
        """A send went through: the next throttle starts from the base pause again."""
        self.level = 0
