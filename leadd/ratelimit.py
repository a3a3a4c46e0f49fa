"""Client-side rate limiting: a token bucket shared by the coroutines of one client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class RateLimiter:
    """Allows `rate` acquisitions per second on average with bursts up to `burst`.

    `pause(seconds)` holds every caller back, for a server that said "slow down"
    (429 / Retry-After): the whole client backs off, not just the one request.
    """

    def __init__(
        self, rate: float, burst: float = 1.0, clock: Callable[[], float] | None = None
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst)
        self._clock = clock or time.monotonic
        self._tokens = self.burst
        self._last = self._clock()
        self._blocked_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        self._blocked_until = max(self._blocked_until, self._clock() + max(0.0, seconds))

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._blocked_until:
                    await asyncio.sleep(self._blocked_until - now)
                    continue
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.rate)
