"""Retry delays: one exponential, jittered policy shared by the supervisor and every client."""

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
