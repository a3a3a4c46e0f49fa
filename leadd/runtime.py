"""What services need, built once by the daemon and passed down: never the daemon itself.

Services, loops and handlers receive a `Runtime`; tests build one around a store and fake
provider clients, with a pinned clock, and need no daemon process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from leadd.config import Config
from leadd.errors import describe_error
from leadd.logs import get_logger
from leadd.providers.sendgrid import SendGridClient
from leadd.providers.shopmonkey import ShopmonkeyClient
from leadd.providers.twilio import TwilioClient
from leadd.store import Store

log = get_logger(__name__)

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _no_wake() -> None:
    """Without that loop in this process, it finds the work on its next tick."""


class Wakeup:
    """A lane's wake-up (enrichment or send): this daemon's loop at once (`local`), and every
    other daemon on the database through `notify` (a NOTIFY), coalesced: one NOTIFY per
    `window` seconds however many leads arrive, so a burst of 2,000 webhooks costs a few
    dozen (a NOTIFY serialises commits; the other daemons hear within the window).
    A failed NOTIFY is forgotten: the other daemons' intervals still find the work."""

    def __init__(
        self,
        lane: str,
        local: Callable[[], None],
        notify: Callable[[str], Awaitable[None]] | None = None,
        window: float = 0.05,
    ) -> None:
        self.lane, self.local, self.notify, self.window = lane, local, notify, window
        self.sent = 0  # NOTIFYs sent (tests, metrics of coalescing)
        self._pending: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self) -> None:
        self.local()
        if self.notify is None or self._pending is not None:
            return
        self._pending = asyncio.get_running_loop().call_later(self.window, self._fire)

    def _fire(self) -> None:
        self._pending = None
        task = asyncio.create_task(self._send(), name=f"wake-{self.lane}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self) -> None:
        assert self.notify is not None
        try:
            await self.notify(self.lane)
            self.sent += 1
        except Exception as exc:  # the other daemons' intervals still find the work
            log.warning("wake.notify_failed", lane=self.lane, error=describe_error(exc))


@dataclass
class ProviderHealth:
    """Problems a service saw with a provider (Shopmonkey refusing our key…), for /readyz.
    Words only: never a payload value."""

    problems: dict[str, str] = field(default_factory=dict)

    def failing(self, provider: str, reason: str) -> None:
        self.problems[provider] = reason

    def ok(self, provider: str) -> None:
        self.problems.pop(provider, None)


@dataclass(frozen=True)
class Runtime:
    config: Config
    store: Store
    shopmonkey: ShopmonkeyClient
    twilio: TwilioClient
    sendgrid: SendGridClient
    instance_id: str  # names this process as a lease holder
    clock: Clock = utcnow  # aware UTC; tests pin it
    wake: Callable[[], None] = _no_wake  # "a touch point may be due now": run the send loop
    # "a lead needs enriching now": run the enrichment loop
    wake_enrichment: Callable[[], None] = _no_wake
    health: ProviderHealth = field(default_factory=ProviderHealth)
