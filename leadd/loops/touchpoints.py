"""Touch-point loop: sends due follow-ups."""

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
        daemon.supervisor.beat("touchpoints")
        with suppress(TimeoutError):
            await asyncio.wait_for(daemon.shutdown.wait(), daemon.config.touchpoints.interval)
