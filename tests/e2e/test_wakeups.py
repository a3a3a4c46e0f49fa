"""Wake-ups across daemons (issue 11): a lane's wake-up reaches every daemon on the database
through NOTIFY, coalesced, and a daemon whose loop is idle for an hour sends at once when
another daemon says work is due."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import uuid

import aiohttp
import asyncpg

from leadd.runtime import Wakeup
from leadd.store import Store
from leadd.store.events import Wake
from tests.conftest import TENANT_ID
from tests.e2e.outreach_support import order_payload, outreach_config, post_order
from tests.fakes.twilio import FakeTwilio
from tests.helpers import base_url, running_daemon, wait_for

OTHER_TENANT = uuid.UUID("00000000-0000-4000-8000-0000000000bb")


async def listening(store: Store, heard: list[Wake], stop: asyncio.Event) -> asyncio.Task[None]:
    """A listener on `store`, returned once it hears (a probe proves it is subscribed)."""
    task = asyncio.create_task(store.listen_wakes(heard.append, stop))

    async def probed() -> bool:
        await store.notify_wake("probe", sender="probe")
        return any(w.lane == "probe" for w in heard)

    await wait_for(probed)
    heard.clear()
    return task


async def test_a_burst_of_wakeups_is_one_notify_heard_by_the_other_daemon(
    pool: asyncpg.Pool,
) -> None:
    here, there = Store(pool, uuid.UUID(TENANT_ID)), Store(pool, uuid.UUID(TENANT_ID))
    other_tenant = Store(pool, OTHER_TENANT)
    heard: list[Wake] = []
    stop = asyncio.Event()
    task = await listening(there, heard, stop)
    try:
        local = 0

        def bump() -> None:
            nonlocal local
            local += 1

        wake = Wakeup("send", bump, functools.partial(here.notify_wake, sender="daemon-a"))
        await other_tenant.notify_wake("send", sender="elsewhere")  # not ours: ignored
        for _ in range(100):  # a burst of new leads
            wake()
        assert local == 100  # this daemon's own loop is woken every time, at once
        await wait_for(lambda: wake.sent == 1)
        await wait_for(lambda: bool(heard))
        # Notifications of one session arrive in order: the other tenant's came first.
        assert heard == [Wake(lane="send", sender="daemon-a")]
        wake()  # a later wake-up is a new NOTIFY
        await wait_for(lambda: wake.sent == 2 and len(heard) == 2)
    finally:
        stop.set()
        await task


async def test_an_idle_daemon_sends_at_once_when_another_daemon_wakes_it(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """The daemon's send loop waits an hour between ticks. A staff message queued straight
    through the store (no local wake-up) goes out as soon as a NOTIFY from another daemon
    says so."""
    cfg = outreach_config(database_url, twilio, touchpoints={"interval": "1h"})
    async with running_daemon(cfg) as daemon:
        lead = uuid.UUID(await post_order(http, base_url(daemon), order_payload()))
        await wait_for(lambda: len(twilio.messages) == 1)  # the acknowledgement
        assert daemon.runtime is not None
        store = daemon.runtime.store
        queued = await store.add_staff_message(
            lead, body="Call me back?", author="ops-bot", now=dt.datetime.now(dt.UTC)
        )
        assert queued is not None and queued.refused is None
        assert len(twilio.messages) == 1
        await store.notify_wake("send", sender="another-daemon")
        await wait_for(lambda: len(twilio.messages) == 2)
        assert twilio.messages[1]["body"] == "Call me back?"


async def test_a_lost_listen_connection_wakes_every_lane_once_it_is_back(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """Wake-ups sent while the listener was away were not heard: when it reconnects, both
    lanes look for work at once instead of on their hourly interval."""
    cfg = outreach_config(database_url, twilio, touchpoints={"interval": "1h"})
    async with running_daemon(cfg) as daemon:
        lead = uuid.UUID(await post_order(http, base_url(daemon), order_payload()))
        await wait_for(lambda: len(twilio.messages) == 1)
        assert daemon.runtime is not None
        queued = await daemon.runtime.store.add_staff_message(
            lead, body="Still there?", author="ops-bot", now=dt.datetime.now(dt.UTC)
        )
        assert queued is not None and queued.refused is None
        conn = await asyncpg.connect(database_url)
        try:
            killed = await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
            )
        finally:
            await conn.close()
        assert killed  # the daemon's listeners (pages and wake-ups) were cut
        await wait_for(lambda: len(twilio.messages) == 2, timeout=20)
        assert twilio.messages[1]["body"] == "Still there?"
