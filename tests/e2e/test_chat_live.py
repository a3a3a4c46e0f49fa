"""Live updates through PostgreSQL LISTEN/NOTIFY with two daemons on one database: a change
written through one reaches the event streams served by the other; events carry no personal
data; streams only hear of leads their viewer may see; a lost listen connection comes back
and tells the pages to refetch."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from leadd.config import Config
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


@dataclass
class Two:
    a: Client  # a client of the first daemon
    b: Client  # and of the second
    lead: str
    path: str  # the lead's chat page
    config: Config


@pytest.fixture
async def two(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> AsyncIterator[Two]:
    """Two daemons on one database, a client on each, and a lead whose first SMS went out."""
    cfg = chat_config(database_url, twilio)
    async with running_daemon(cfg) as da, running_daemon(cfg) as db:
        lead = await post_order(http, base_url(da), order_payload())
        await wait_for(lambda: twilio.messages)
        a, b = Client(base_url(da)), Client(base_url(db))
        try:
            yield Two(a, b, lead, f"/c/{token_of(da.config, lead)}", da.config)
        finally:
            await a.close()
            await b.close()


async def test_an_update_written_through_one_daemon_reaches_streams_served_by_the_other(
    two: Two,
) -> None:
    a, b, lead, path = two.a, two.b, two.lead, two.path
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
    two: Two, http: aiohttp.ClientSession, twilio: FakeTwilio
) -> None:
    a, b, path = two.a, two.b, two.path
    await a.sign_in(UPTOWN_AGENT)
    uptown_stream = await _open(a, "/inbox/events")
    await b.post(path + "/messages", {"body": "downtown news"})  # a downtown lead
    uptown = order_payload(phone="+13125550177", first_name="Ursula")
    uptown["data"]["locationId"] = "loc-sm-2"
    other = await post_order(http, b.base, uptown)
    await wait_for(lambda: len(twilio.messages) == 2)  # its first SMS went out (silently)
    await a.post(f"/c/{token_of(two.config, other)}/messages", {"body": "uptown news"})
    event = await uptown_stream.next()
    assert event["lead"] == other  # the downtown lead's events never came


async def test_a_lost_listen_connection_reconnects_and_asks_pages_to_refetch(
    two: Two, database_url: str
) -> None:
    a, b, lead, path = two.a, two.b, two.lead, two.path
    await a.sign_in(AGENT)
    stream = await _open(a, "/inbox/events")
    killed = await sql(
        database_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    assert len(killed) == 4  # per daemon: the pages' live updates and the lanes' wake-ups
    assert (await stream.next())["kind"] == "resync"
    await b.post(path + "/messages", {"body": "after the outage"})
    event = await stream.next()
    while event["kind"] != "message":
        event = await stream.next()
    assert event["lead"] == lead


async def test_the_automated_send_path_notifies_nothing_people_and_state_changes_do(
    database_url: str,
) -> None:
    """A NOTIFY serialises commits, so the transcript of an automated send, the first send's
    new -> contacted and the automated touch points are silent; a customer's or a person's
    message, a staff SMS queued or moving, other state changes and a pause are heard, with no
    personal data in the payload."""
    import asyncio
    import uuid

    import asyncpg

    tenant, lead = uuid.uuid4(), uuid.uuid4()
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(database_url)
    writer = await asyncpg.connect(database_url)
    try:
        await listener.add_listener("leadd_events", lambda *a: heard.put_nowait(a[3]))
        await writer.execute("INSERT INTO tenants VALUES ($1, 'x')", tenant)
        await writer.execute(
            "INSERT INTO locations (tenant_id, id, name, timezone) VALUES ($1, 'd', 'd', 'UTC')",
            tenant,
        )
        await writer.execute(
            "INSERT INTO leads (id, tenant_id, location_id, shopmonkey_order_id, source, "
            "order_data, first_name, phone) VALUES ($1, $2, 'd', 'o1', 'test', '{}', 'Jamie', "
            "'+13125550123')",
            lead,
            tenant,
        )
        message = (
            "INSERT INTO chat_messages (tenant_id, lead_id, direction, channel, body, author)"
            " VALUES ($1, $2, $3, 'sms', 'Jamie says hi', $4)"
        )
        step = (
            "INSERT INTO touch_points (tenant_id, lead_id, sequence, step_index, step_name, "
            "channel, due_at, kind, body, author) VALUES ($1, $2, $3, $4, 's', 'sms', now(), "
            "$3, $5, $6)"
        )
        await writer.execute(message, tenant, lead, "outbound", None)  # automated: silent
        await writer.execute("UPDATE leads SET state = 'contacted' WHERE id = $1", lead)  # silent
        await writer.execute(step, tenant, lead, "sequence", 0, None, None)  # silent
        await writer.execute(message, tenant, lead, "inbound", None)
        await writer.execute("UPDATE leads SET state = 'engaged' WHERE id = $1", lead)
        await writer.execute(message, tenant, lead, "outbound", "staff:alex@acme.example")
        await writer.execute(step, tenant, lead, "staff", 0, "On my way", "ops-bot")
        await writer.execute("UPDATE leads SET paused_at = now() WHERE id = $1", lead)
        await writer.execute("UPDATE touch_points SET state = 'sending' WHERE kind = 'staff'")
        got = [json.loads(await asyncio.wait_for(heard.get(), 5)) for _ in range(6)]
        assert [g["kind"] for g in got] == [
            "message", "state", "message", "delivery", "conversation", "delivery"
        ]  # fmt: skip
        for g in got:
            assert g == {
                "tenant": str(tenant),
                "lead": str(lead),
                "kind": g["kind"],
                "location": "d",
            }
        assert heard.empty()
    finally:
        await listener.close()
        await writer.close()


async def test_shutdown_ends_open_event_streams_instead_of_waiting_them_out(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """Streams never end by themselves: on shutdown the daemon closes them (a browser then
    reconnects to whichever daemon is up) rather than waiting out shutdown_timeout."""
    import asyncio

    cfg = chat_config(database_url, twilio, shutdown_timeout="60s")
    async with running_daemon(cfg) as daemon:
        lead = await post_order(http, base_url(daemon), order_payload())
        await wait_for(lambda: twilio.messages)
        client = Client(base_url(daemon))
        try:
            events = await _open(client, f"/c/{token_of(daemon.config, lead)}/events")
            assert (await events.response.content.readline()).startswith(b"retry:")
            daemon.shutdown.set()
            # A hang would last the 60 s shutdown_timeout; closing takes a moment.
            rest = await asyncio.wait_for(events.response.content.read(), 20)
            assert b"update" not in rest
        finally:
            await client.close()
