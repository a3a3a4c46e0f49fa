"""What every fake provider server shares: a real aiohttp server on a random local port,
started and stopped like an async context manager, with a `delay` that ends early on stop."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Self

from aiohttp import web


class FakeServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.delay = 0.0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> Self:
        """Listen on a random local port; `url` is the base_url to give the client."""
        app = web.Application()
        self.add_routes(app)
        self._closing = asyncio.Event()
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.url = f"http://{self.host}:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        """Stop listening; delayed responses still in flight are cut short."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _wait_for(self, event: asyncio.Event) -> None:
        """Wait for a test's barrier; cut short when the server stops."""
        stop = asyncio.ensure_future(self._closing.wait())
        barrier = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({stop, barrier}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            barrier.cancel()

    async def _wait_delay(self) -> None:
        if self.delay > 0:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.delay)
