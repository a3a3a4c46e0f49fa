"""Live updates from PostgreSQL: LISTEN on the one channel the schema's triggers NOTIFY
(leadd/sql/0010_conversations.sql), so a change written by any daemon on this database reaches
the pages every daemon serves. The same channel carries wake-ups between daemons (issue 11):
a lead taken by one daemon is enriched and texted by whichever daemon is free, at once.

One connection, held for as long as the listener runs, taken from the pool so it is set up like
every other. When it is lost (server restart, network), the listener reconnects with backoff
and reports `None`: events may have been missed, pages should refresh.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import asyncpg

from leadd.backoff import Backoff
from leadd.logs import get_logger
from leadd.store.core import StoreCore

log = get_logger(__name__)

CHANNEL = "leadd_events"
RETRY = Backoff(base=0.5, cap=15.0, jitter=0.2)
PING_EVERY = 30.0  # seconds: a connection that died silently (no FIN) is noticed this soon
PING_TIMEOUT = 5.0


@dataclass(frozen=True)
class LiveEvent:
    """Something changed on a lead: a message, its state, a booking, the inbox flags."""

    lead_id: uuid.UUID
    location_id: str | None
    kind: str  # message | state | appointment | conversation | delivery


def parse(payload: str, tenant_id: uuid.UUID) -> LiveEvent | None:
    """A NOTIFY payload of this tenant as an event; None for another tenant or a bad one."""
    try:
        data = json.loads(payload)
        if not isinstance(data, dict) or uuid.UUID(str(data.get("tenant"))) != tenant_id:
            return None
        location = data.get("location")
        return LiveEvent(
            lead_id=uuid.UUID(str(data.get("lead"))),
            location_id=location if isinstance(location, str) else None,
            kind=str(data.get("kind")),
        )
    except (ValueError, TypeError):
        return None


@dataclass(frozen=True)
class Wake:
    """Another daemon's "work for `lane` may be due now" (enrichment or send)."""

    lane: str
    sender: str  # its instance id


def parse_wake(payload: str, tenant_id: uuid.UUID) -> Wake | None:
    """A wake-up of this tenant; None for anything else (a live event, another tenant)."""
    try:
        data = json.loads(payload)
        if not isinstance(data, dict) or data.get("kind") != "wake":
            return None
        if uuid.UUID(str(data.get("tenant"))) != tenant_id:
            return None
        return Wake(lane=str(data.get("lane")), sender=str(data.get("from")))
    except (ValueError, TypeError):
        return None


class EventStore(StoreCore):
    async def listen(
        self, on_event: Callable[[LiveEvent | None], None], stop: asyncio.Event
    ) -> None:
        """This tenant's live events until `stop` is set (see `listen`)."""
        await listen(self.pool, self.tenant_id, on_event, stop)

    async def listen_wakes(
        self, on_wake: Callable[[Wake | None], None], stop: asyncio.Event
    ) -> None:
        """Other daemons' wake-ups (and our own: the caller ignores those) until `stop`;
        `None` after a reconnect: wake-ups may have been missed meanwhile, wake every lane."""
        await listen(self.pool, self.tenant_id, on_wake, stop, parse=parse_wake)

    async def notify_wake(self, lane: str, *, sender: str) -> None:
        """Tell every daemon on this database that work for `lane` may be due now."""
        await self._execute("notify_wake", lane, sender)


async def listen(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    on_event: Callable[[Any], None],
    stop: asyncio.Event,
    *,
    parse: Callable[[str, uuid.UUID], Any] = parse,
) -> None:
    """Deliver this tenant's events (as `parse` reads them; live events by default) to
    `on_event` until `stop` is set; `None` after every reconnect. Never raises for a database
    problem: it waits and tries again."""
    attempt, connected_before = 0, False
    while not stop.is_set():
        try:
            async with pool.acquire() as conn:
                if connected_before:
                    on_event(None)  # we were away: whatever happened meanwhile was not heard
                connected_before, attempt = True, 0
                await _hold(conn, tenant_id, on_event, stop, parse)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("live.listen_lost", error=f"{type(exc).__name__}: {exc}")
        if stop.is_set():
            return
        delay = RETRY.delay(attempt)
        attempt += 1
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


async def _hold(
    conn: Any,
    tenant_id: uuid.UUID,
    on_event: Callable[[Any], None],
    stop: asyncio.Event,
    parse: Callable[[str, uuid.UUID], Any],
) -> None:
    lost = asyncio.Event()

    def notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        event = parse(payload, tenant_id)
        if event is not None:
            on_event(event)

    def terminated(_conn: Any) -> None:
        lost.set()

    conn.add_termination_listener(terminated)
    await conn.add_listener(CHANNEL, notified)
    log.info("live.listening", channel=CHANNEL)
    try:
        while not stop.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(_first(stop, lost), PING_EVERY)
            if lost.is_set():
                raise ConnectionResetError("listen connection closed")
            if not stop.is_set():
                await conn.execute("SELECT 1", timeout=PING_TIMEOUT)
    finally:
        conn.remove_termination_listener(terminated)
        if not conn.is_closed():
            # Back to the pool clean: the pool's reset does not UNLISTEN (store/core.py).
            with suppress(Exception):
                await conn.remove_listener(CHANNEL, notified)


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
