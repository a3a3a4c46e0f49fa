"""What the ops use cases need, built once by whoever runs them (the daemon, the CLI)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from leadd.config import Config
from leadd.store import Store


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _no_wake() -> None:
    """Without a daemon in this process (the CLI), its loop finds the work on its next tick."""


@dataclass(frozen=True)
class OpsDeps:
    config: Config
    store: Store
    clock: Callable[[], dt.datetime] = utcnow  # aware UTC; tests pin it
    wake: Callable[[], None] = _no_wake  # "a touch point is due now": run the send loop
