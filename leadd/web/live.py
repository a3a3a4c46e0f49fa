"""Live updates for the pages: server-sent events fed by PostgreSQL LISTEN/NOTIFY.

One listener per daemon (leadd/store/events.py) hears every change written on the database, by
this daemon or another, and hands it to the Hub, which passes it to the open streams whose
viewer may see that lead. An event says only which lead changed and how (`kind`); the page's
script then fetches the part of the page that changed, through the same checks as the page.
A stream that falls behind, or a listener that reconnected, gets a `resync`: refetch all.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress

from aiohttp import web

from leadd.logs import get_logger
from leadd.store.events import LiveEvent
from leadd.web.pages import runtime_when_ready

log = get_logger(__name__)

HUB: web.AppKey[Hub] = web.AppKey("live_hub")
TICK = 25.0  # seconds between keep-alive comments (and the stream's own checks)
QUEUE_SIZE = 64
# What the customer's page shows changes with these; 'conversation' (read markers, owners, a
# pause) and 'delivery' (a staff SMS on its way: the page shows it once sent) are staff's.
CUSTOMER_KINDS = frozenset({"message", "state", "appointment"})
_CLOSE = object()


class Stream:
    """One open page's queue of events."""

    def __init__(self, accept: Callable[[LiveEvent], bool]) -> None:
        self.accept = accept
        self.queue: asyncio.Queue[object] = asyncio.Queue(QUEUE_SIZE)

    def offer(self, event: LiveEvent | None | object) -> None:
        if isinstance(event, LiveEvent) and not self.accept(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # Fell behind: drop what is queued, tell the page to refetch everything.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(_CLOSE if event is _CLOSE else None)


class Hub:
    def __init__(self) -> None:
        self.streams: set[Stream] = set()
        self.closing = False

    def publish(self, event: LiveEvent | None) -> None:
        for stream in list(self.streams):
            stream.offer(event)

    def close(self) -> None:
        self.closing = True
        for stream in list(self.streams):
            stream.offer(_CLOSE)

    @contextmanager
    def subscribe(self, accept: Callable[[LiveEvent], bool]) -> Iterator[Stream]:
        stream = Stream(accept)
        self.streams.add(stream)
        try:
            yield stream
        finally:
            self.streams.discard(stream)


def setup(app: web.Application) -> None:
    app[HUB] = Hub()
    app.cleanup_ctx.append(_listener)
    app.on_shutdown.append(_close_streams)


async def _listener(app: web.Application) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(_listen(app, stop), name="live-listener")
    yield
    stop.set()
    with suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


async def _listen(app: web.Application, stop: asyncio.Event) -> None:
    ready = asyncio.ensure_future(runtime_when_ready(app))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not ready.done():
        ready.cancel()
        return
    rt = ready.result()
    if rt is not None:
        await rt.store.listen(app[HUB].publish, stop)


async def _close_streams(app: web.Application) -> None:
    """Shutdown: end every open stream so in-flight requests can finish (browsers reconnect
    to whichever daemon is up)."""
    app[HUB].close()


async def stream(
    request: web.Request,
    accept: Callable[[LiveEvent], bool],
    *,
    customer: bool,
    on_tick: Callable[[], Awaitable[bool]],
) -> web.StreamResponse:
    """Serve one event stream until the client leaves, `on_tick` says stop, or shutdown.

    Events carry the lead id for staff and nothing but the kind for a customer."""
    hub = request.app[HUB]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a proxy must pass each event on at once
        }
    )
    with hub.subscribe(accept) as sub:
        await response.prepare(request)
        try:
            await response.write(b"retry: 2000\n\n")
            while not hub.closing:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), TICK)
                except TimeoutError:
                    if not await on_tick():
                        break
                    await response.write(b": keep-alive\n\n")
                    continue
                if item is _CLOSE:
                    break
                await response.write(_message(item, customer=customer))
        except ConnectionError:
            pass  # the page was closed
    return response


def _message(item: object, *, customer: bool) -> bytes:
    if isinstance(item, LiveEvent):
        data = {"kind": item.kind} if customer else {"kind": item.kind, "lead": str(item.lead_id)}
    else:
        data = {"kind": "resync"}
    return f"event: update\ndata: {json.dumps(data)}\n\n".encode()


def for_lead(lead_id: uuid.UUID) -> Callable[[LiveEvent], bool]:
    return lambda e: e.lead_id == lead_id and e.kind in CUSTOMER_KINDS


def for_locations(visible: tuple[str, ...] | None) -> Callable[[LiveEvent], bool]:
    return lambda e: visible is None or e.location_id in visible
