"""Slow and greedy clients against a real `leadd run` process (uvloop, as in production), over
real sockets: half a request's headers, a body trickled a byte at a time, more connections than
the cap. The timeouts are shortened for the test; each client here is one a real attacker
(or a broken proxy) would be, and each must lose its connection without hurting anyone else.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import asyncpg
import pytest
from twilio.request_validator import RequestValidator

from tests.conftest import TENANT_ID, base_config, free_port
from tests.e2e.outreach_support import PHONE, provider_sections, sql
from tests.e2e.raw_http import exchange, parse_answer, read_until_closed, request_bytes
from tests.fakes.twilio import FakeTwilio
from tests.helpers import DaemonProcess, wait_for

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
HEALTHZ = request_bytes("GET", "/healthz")
ORDER = "/webhooks/shopmonkey/order"


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        d.kill()


async def start(
    database_url: str,
    tmp_path: Path,
    daemons: list[DaemonProcess],
    sections: dict[str, Any] | None = None,
    **http: Any,
) -> DaemonProcess:
    cfg = base_config(**(sections or {}))
    cfg["database"] = {"url": database_url}
    port = free_port()
    cfg["http"] = {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}"}
    cfg["http"].update(http)
    proc = DaemonProcess(cfg, tmp_path).start()
    daemons.append(proc)
    await proc.wait_ready()
    return proc


@asynccontextmanager
async def connections(port: int) -> AsyncIterator[list[Conn]]:
    """Raw client connections opened by the test; all closed at the end."""
    opened: list[Conn] = []
    try:
        yield opened
    finally:
        for _, writer in opened:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()


async def connect(port: int, opened: list[Conn], data: bytes = b"") -> Conn:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    opened.append((reader, writer))
    if data:
        writer.write(data)
        await writer.drain()
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before it closed the connection (fails if it stays open)."""
    return await read_until_closed(reader, timeout=20)


async def metric(proc: DaemonProcess, name: str, **labels: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(f"{proc.url}/metrics") as r:
        text = await r.text()
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(name + (f"{{{selector}}}" if selector else "")) + r" (\S+)$"
    m = re.search(pattern, text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def half_headers() -> bytes:
    return request_bytes("POST", ORDER, body=b"{}").split(b"\r\n\r\n")[0][:40]


async def test_a_client_that_never_finishes_its_headers_is_disconnected(
    database_url: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    """Half a request line and headers, or nothing at all: closed after header_timeout with
    nothing answered. A client that sends its request in time is served, also a second one
    on the same keep-alive connection; the idle connection after it is closed too."""
    proc = await start(database_url, tmp_path, daemons, header_timeout="1s")
    async with connections(proc.port) as opened:
        partial, _ = await connect(proc.port, opened, half_headers())
        silent, _ = await connect(proc.port, opened)
        keepalive, writer = await connect(proc.port, opened)
        for _ in range(2):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await keepalive.readuntil(b"\r\n\r\n")
            answer = parse_answer(head)
            assert answer.status == 200
            await keepalive.readexactly(int(answer.headers["content-length"]))

        assert await closed_by_server(partial) == b""
        assert await closed_by_server(silent) == b""
        assert await closed_by_server(keepalive) == b""
    assert await metric(proc, "leadd_http_connections_closed_total", reason="header_timeout") == 1
    assert await metric(proc, "leadd_http_connections_closed_total", reason="idle") == 2
    assert "Traceback" not in proc.log()


API_TOKEN = "ops-token-0123456789abcdef"
TRICKLED = {
    "shopmonkey-webhook": (ORDER, []),
    # The ops API maps TimeoutError and OSError from its handlers to a database 503: a cut
    # body must still be a 408.
    "ops-api": (
        "/api/v1/leads/00000000-0000-4000-8000-000000000001/state",
        [("Authorization", f"Bearer {API_TOKEN}")],
    ),
}


@pytest.mark.parametrize("route", list(TRICKLED))
async def test_a_trickled_body_is_cut_with_408(
    route: str, database_url: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    """Headers on time, then a byte at a time for ever: after body_timeout the handler's read
    fails, the client gets a 408 with a JSON reason and the connection closes; nothing is
    stored and the daemon logs no error."""
    api = {"api": {"tokens": [{"name": "ops", "token": API_TOKEN, "role": "write"}]}}
    proc = await start(database_url, tmp_path, daemons, sections=api, body_timeout="1s")
    path, auth = TRICKLED[route]
    head = request_bytes(
        "POST", path, headers=[("Content-Type", "application/json"), *auth], body=b""
    )
    head = head.replace(b"Content-Length: 0", b"Content-Length: 100000")
    async with connections(proc.port) as opened:
        reader, writer = await connect(proc.port, opened, head)

        async def trickle() -> None:
            while not writer.is_closing():
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.05)  # the client's pace, not a wait for the server

        trickling = asyncio.create_task(trickle())
        try:
            data = await closed_by_server(reader)
        finally:
            trickling.cancel()
            with suppress(asyncio.CancelledError, ConnectionError):
                await trickling
    answer = parse_answer(data)
    assert answer.status == 408
    assert answer.headers["connection"] == "close"
    assert answer.json() == {
        "success": False,
        "error": "request body not received within 1 s",
    }
    assert await metric(proc, "leadd_http_connections_closed_total", reason="body_timeout") == 1
    assert await metric(proc, "leadd_leads_ingested_total", source="webhook", result="created") == 0
    levels = {e["level"] for e in proc.log_events()}
    assert "error" not in levels, proc.log()


async def test_at_the_cap_slow_clients_make_room_for_a_health_check(
    database_url: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    """max_connections slow clients (half their headers) hold every slot: a fresh connection
    to /healthz is still served, because it pushes out the one that has waited longest."""
    cap = 6
    proc = await start(database_url, tmp_path, daemons, max_connections=cap, header_timeout="60s")
    async with connections(proc.port) as opened:
        slow = [(await connect(proc.port, opened, half_headers()))[0] for _ in range(cap)]
        answer = await exchange(proc.port, HEALTHZ)
        assert answer.status == 200 and answer.json()["status"] == "ok"
        assert await closed_by_server(slow[0]) == b""  # the longest waiting, pushed out
        # The health check's connection has closed, so /metrics finds a free slot: the other
        # slow clients are still open, counted with the /metrics connection itself.
        assert await metric(proc, "leadd_http_connections_closed_total", reason="evicted") == 1
        assert await metric(proc, "leadd_http_connections") == cap


async def test_at_the_cap_stalled_uploads_make_room_for_a_health_check(
    database_url: str, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    """max_connections clients inside a request whose body stalls: a fresh /healthz is still
    served, pushing out the oldest upload (its handler's read fails; nothing is stored)."""
    cap = 4
    proc = await start(database_url, tmp_path, daemons, max_connections=cap)
    async with connections(proc.port) as opened:
        stalled = [await stalled_upload(proc.port, opened) for _ in range(cap)]
        answer = await exchange(proc.port, HEALTHZ)
        assert answer.status == 200
        assert b"HTTP/1.1 200" not in await closed_by_server(stalled[0])
        assert await metric(proc, "leadd_http_connections_closed_total", reason="evicted") == 1
    assert await metric(proc, "leadd_leads_ingested_total", source="webhook", result="created") == 0
    assert "error" not in {e["level"] for e in proc.log_events()}, proc.log()


async def stalled_upload(port: int, opened: list[Conn]) -> asyncio.StreamReader:
    """A connection inside a request, its body stalled after a few bytes."""
    head = request_bytes(
        "POST",
        ORDER,
        headers=[("Content-Type", "application/json"), ("Expect", "100-continue")],
        body=b"",
    ).replace(b"Content-Length: 0", b"Content-Length: 1000")
    reader, writer = await connect(port, opened, head)
    # aiohttp answers 100 Continue as the request enters the handler chain: from here on the
    # connection is inside a request.
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b'{"half": ')
    await writer.drain()
    return reader


async def test_at_the_cap_with_every_request_being_handled_a_new_connection_is_refused(
    database_url: str, tmp_path: Path, daemons: list[DaemonProcess], twilio: FakeTwilio
) -> None:
    """max_connections requests, complete, all being handled (inbound SMS waiting for a lead
    row the test holds locked): nothing can be pushed out, so a new connection gets a 503 and
    is closed at once. When the lock goes, every held request completes, and /healthz works."""
    cap = 4
    proc = await start(
        database_url, tmp_path, daemons, max_connections=cap, sections=provider_sections(twilio)
    )
    lead_id = uuid.uuid4()
    await sql(
        database_url,
        "INSERT INTO leads (id, tenant_id, location_id, shopmonkey_order_id, source, order_data,"
        " phone) VALUES ($1, $2, 'downtown', 'order-1', 'test', '{}', $3)",
        lead_id,
        uuid.UUID(TENANT_ID),
        PHONE,
    )
    lock = await asyncpg.connect(database_url)
    try:
        locked = lock.transaction()
        await locked.start()
        await lock.execute("SELECT 1 FROM leads WHERE id = $1 FOR UPDATE", lead_id)
        async with connections(proc.port) as opened:
            held = []
            for n in range(cap):
                params = {"MessageSid": f"SM{n:032x}", "From": PHONE, "Body": "hello"}
                url = f"{proc.url}/webhooks/twilio/sms"
                signature = RequestValidator(twilio.auth_token).compute_signature(url, params)
                request = request_bytes(
                    "POST",
                    "/webhooks/twilio/sms",
                    headers=[
                        ("Content-Type", "application/x-www-form-urlencoded"),
                        ("X-Twilio-Signature", signature),
                    ],
                    body=urlencode(params).encode(),
                )
                held.append((await connect(proc.port, opened, request))[0])

            async def all_waiting() -> bool:
                [row] = await sql(
                    database_url,
                    "SELECT count(*) AS n FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                return bool(row["n"] == cap)

            await wait_for(all_waiting, timeout=20)
            refused, _ = await connect(proc.port, opened)
            answer = parse_answer(await closed_by_server(refused))
            assert answer.status == 503
            assert answer.json() == {"success": False, "error": "too many open connections"}

            await locked.rollback()
            for reader in held:
                assert parse_answer(await closed_by_server(reader)).status == 200
    finally:
        await lock.close()
    assert (await exchange(proc.port, HEALTHZ)).status == 200
    assert await metric(proc, "leadd_http_connections_closed_total", reason="refused") == 1
    assert len(await sql(database_url, "SELECT * FROM chat_messages")) == cap
