"""Client-side rate limiting: a token bucket shared by the coroutines of one client, served by
priority: when several callers wait, the most urgent goes first (the Shopmonkey budget is spent
on the customer lookups that gate acknowledgements before vehicle and services lookups)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable

URGENT = 0  # e.g. the customer lookup an acknowledgement waits for, the poller's list call
NORMAL = 1


class RateLimiter:
    """Allows `rate` acquisitions per second on average with bursts up to `burst`.

    Waiters are served lowest `priority` first, then in arrival order. A caller cancelled
    while it waits takes nothing; one cancelled just after it was granted a token gives the
    token back.

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
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._pump: asyncio.Task[None] | None = None

    def pause(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        if self.max_pause is not None:
            seconds = min(seconds, self.max_pause)
        self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def paused_for(self) -> float:
        """Seconds until a pause ends (0.0 when not paused)."""
        return max(0.0, self._blocked_until - self._clock())

    def waiting(self) -> int:
        """Callers waiting for a token now."""
        return sum(1 for _, _, fut in self._waiters if not fut.done())

    async def acquire(self, priority: int = NORMAL) -> None:
        if not self._waiters and self._wait_time() == 0.0:
            self._tokens -= 1.0  # nobody ahead and a token at hand: no task switch
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), fut))
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._serve(), name="ratelimit")
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._tokens = min(self.burst, self._tokens + 1.0)  # granted, not used
            else:
                fut.cancel()  # the pump skips it
            raise

    def _wait_time(self) -> float:
        """Seconds until a token may be taken (0.0: now), refilling the bucket."""
        now = self._clock()
        if now < self._blocked_until:
            return self._blocked_until - now
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            return 0.0
        return (1.0 - self._tokens) / self.rate

    async def _serve(self) -> None:
        """Hand tokens to waiters, most urgent first. After a sleep the head of the queue is
        looked at again, so an urgent caller that arrived meanwhile goes next."""
        while self._waiters:
            fut = self._waiters[0][2]
            if fut.done():  # cancelled while waiting
                heapq.heappop(self._waiters)
                continue
            wait = self._wait_time()
            if wait > 0.0:
                await asyncio.sleep(wait)
                continue
            heapq.heappop(self._waiters)
            self._tokens -= 1.0
            fut.set_result(None)
