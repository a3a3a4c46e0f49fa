"""Client-side rate limiting: a token bucket shared by the coroutines of one client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class RateLimiter:
    """Allows `rate` acquisitions per second on average with bursts up to `burst`.

    `pause(seconds)` holds every caller back, for a server that said "slow down"
    (429 / Retry-After): the whole client backs off, not just the one request. `max_pause`
    bounds what one such answer can do: a server (or a proxy) saying "come back tomorrow"
    must not stop every caller for a day.
    """

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        clock: Callable[[], float] | None = None,
        max_pause: float | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if max_pause is not None and max_pause <= 0:
            raise ValueError("max_pause must be positive")
        self.rate = rate
        self.burst = max(1.0, burst)
        self.max_pause = max_pause
        self._clock = clock or time.monotonic
        self._tokens = self.burst
        self._last = self._clock()
        self._blocked_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        if self.max_pause is not None:
            seconds = min(seconds, self.max_pause)
        self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def paused_for(self) -> float:
        """Seconds until a pause ends (0.0 when not paused)."""
        return max(0.0, self._blocked_until - self._clock())

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
