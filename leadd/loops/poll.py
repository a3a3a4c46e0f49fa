"""Shopmonkey poll loop: catches orders the webhook missed."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from leadd.daemon import Daemon


async def run(daemon: Daemon) -> None:
    if await daemon.wait_db() is None:
        return
    while not daemon.shutdown.is_set():
        daemon.supervisor.beat("poll")
        with suppress(TimeoutError):
            await asyncio.wait_for(daemon.shutdown.wait(), daemon.config.shopmonkey.poll_interval)
