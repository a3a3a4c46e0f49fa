"""What services need, built once by the daemon and passed down: never the daemon itself.

Services, loops and handlers receive a `Runtime`; tests build one around a store and fake
provider clients, with a pinned clock, and need no daemon process.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from leadd.config import Config
from leadd.providers.sendgrid import SendGridClient
from leadd.providers.shopmonkey import ShopmonkeyClient
from leadd.providers.twilio import TwilioClient
from leadd.store import Store

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _no_wake() -> None:
    """Without a touch-point loop in this process, it finds the work on its next tick."""


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
    health: ProviderHealth = field(default_factory=ProviderHealth)
