"""What the conversation services use, built once by the daemon: never the daemon itself."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from leadd.config import Config
from leadd.store.conversations import ConversationStore


@dataclass(frozen=True)
class Deps:
    config: Config  # with chat.secret resolved (links.with_secret)
    store: ConversationStore
    clock: Callable[[], dt.datetime]  # aware UTC; tests pin it
    wake: Callable[[], None]  # a touch point is due now: run the send loop
