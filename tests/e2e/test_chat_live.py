"""Live updates through PostgreSQL LISTEN/NOTIFY with two daemons on one database: a change
written through one reaches the event streams served by the other; events carry no personal
data; streams only hear of leads their viewer may see; a lost listen connection comes back
and tells the pages to refetch."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.e2e.chat_support import AGENT, UPTOWN_AGENT, Client, chat_config, csrf_of, token_of
from tests.e2e.outreach_support import order_payload, post_order, sql
from tests.fakes.twilio import FakeTwilio
from tests.helpers import base_url, running_daemon, wait_for


class Events:
    """An open event stream: `next()` returns the data of the next `update` event."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        event, data = None, None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = await _readline(self.response, deadline - time.monotonic())
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = line.split(":", 1)[1].strip()
            elif line == "" and event == "update" and data is not None:
                return dict(json.loads(data))
        raise AssertionError("no event within the timeout")


async def _readline(response: aiohttp.ClientResponse, timeout: float) -> bytes:
    import asyncio

    line = await asyncio.wait_for(response.content.readline(), max(timeout, 0.01))
    if not line:
        raise AssertionError("stream closed")
    return line


async def _open(client: Client, path: str) -> Events:
    r = await client.session.get(client.base + path, allow_redirects=False)
    client.streams.append(r)
    assert r.status == 200, (path, r.status)
    assert r.headers["Content-Type"] == "text/event-stream"
    assert r.headers["Cache-Control"] == "no-store"
    return Events(r)


@pytest.fixture
async def two(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[Client, Client, str, str]]:
    """Two daemons on one database, a client on each, and a lead: (a, b, lead id, chat path)."""
    cfg = chat_config(database_url, twilio)
    async with running_daemon(cfg) as da, running_daemon(cfg) as db:
        lead = await post_order(http, base_url(da), order_payload())
        await wait_for(lambda: twilio.messages)
        a, b = Client(base_url(da)), Client(base_url(db))
        try:
            yield a, b, lead, f"/c/{token_of(da.config, lead)}"
        finally:
            await a.close()
            await b.close()


async def test_an_update_written_through_one_daemon_reaches_streams_served_by_the_other(
    two: tuple[Client, Client, str, str],
) -> None:
    a, b, lead, path = two
    await a.sign_in(AGENT)
    inbox = await _open(a, "/inbox/events")
    customer = await _open(a, path + "/events")

    t0 = time.monotonic()
    status, _, _ = await b.post(path + "/messages", {"body": "Jamie here, call me at 5"})
    assert status == 303
    seen: list[dict[str, Any]] = []
    while not any(e["kind"] == "message" for e in seen):
        seen.append(await inbox.next())
    latency = time.monotonic() - t0
    print(f"customer message -> other daemon's inbox stream: {latency * 1000:.0f} ms")
    assert all(e["lead"] == lead for e in seen)
    while (await customer.next())["kind"] != "message":  # the customer's page hears it too
        pass
    # Events name the lead and what changed, never a name or the text.
    for e in seen:
        assert set(e) == {"kind", "lead"} and "Jamie" not in json.dumps(e)

    # The other way: the agent replies through b while the customer's stream (on a) is open.
    await b.sign_in(AGENT)
    _, page, _ = await b.get(f"/inbox/leads/{lead}")
    status, _, headers = await b.post(
        f"/inbox/leads/{lead}/reply", {"body": "Will do!", "csrf": csrf_of(page)}
    )
    assert status == 303 and "sent=web" in headers["Location"]  # the page is open on a
    kinds = set()
    while "message" not in kinds:
        event = await customer.next()
        assert set(event) == {"kind"}  # a customer's stream is not told lead ids
        kinds.add(event["kind"])
    _, thread, _ = await a.get(path + "/thread")
    assert "Will do!" in thread


async def test_a_stream_hears_only_of_leads_its_viewer_may_see(
    two: tuple[Client, Client, str, str], http: aiohttp.ClientSession, twilio: FakeTwilio
) -> None:
    a, b, lead, path = two
    await a.sign_in(UPTOWN_AGENT)
    uptown_stream = await _open(a, "/inbox/events")
    await b.post(path + "/messages", {"body": "downtown news"})  # a downtown lead
    uptown = order_payload(phone="+13125550177", first_name="Ursula")
    uptown["data"]["locationId"] = "loc-sm-2"
    other = await post_order(http, b.base, uptown)
    event = await uptown_stream.next()
    assert event["lead"] == other  # the downtown lead's events never came


async def test_a_lost_listen_connection_reconnects_and_asks_pages_to_refetch(
    two: tuple[Client, Client, str, str], database_url: str
) -> None:
    a, b, lead, path = two
    await a.sign_in(AGENT)
    stream = await _open(a, "/inbox/events")
    killed = await sql(
        database_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    assert len(killed) == 2  # one listener per daemon
    assert (await stream.next())["kind"] == "resync"
    await b.post(path + "/messages", {"body": "after the outage"})
    event = await stream.next()
    while event["kind"] != "message":
        event = await stream.next()
    assert event["lead"] == lead
