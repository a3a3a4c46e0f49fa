"""Outreach benchmark: speed-to-lead and dispatch throughput of the real daemon.

    LEADD_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \
        .venv/bin/python -m bench.outreach [--leads 1000] [--rate 200] [--dispatch 2000]

A fresh database is created on the server of LEADD_TEST_DATABASE_URL (dropped after), a
`leadd run` subprocess is started against it and against a fake Twilio (tests/fakes) in this
process that answers every request after 200 ms (`delay=0.2`), with the client-side rate limit
at 1000 messages/s.

1. speed-to-lead: signed order webhooks are posted on a fixed schedule at --rate leads/s;
   latency = the fake's receipt of the Twilio request minus the moment the webhook POST began.
2. dispatch throughput: --dispatch leads of a second location whose only step is an hour
   away are ingested and enriched first; then all their touch points are made due at once,
   and sends/s = messages / (last receipt - first receipt) at the fake.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from leadd import phones
from leadd.providers.shopmonkey_webhook import sign_webhook
from tests.conftest import _with_db, base_config, free_port
from tests.fakes.twilio import FakeTwilio
from tests.helpers import DaemonProcess, wait_for

SECRET = "bench-secret"
AREA_CODES = ("312", "773", "872")  # Illinois: one zone, no state rule


def phone_numbers(n: int) -> list[str]:
    out: list[str] = []
    for area in AREA_CODES:
        for line in range(10000):
            number = phones.normalize(f"+1{area}555{line:04d}")
            if number:
                out.append(number)
                if len(out) == n:
                    return out
    raise SystemExit(f"only {len(out)} valid test numbers")


def config(database_url: str, twilio: FakeTwilio, port: int) -> dict[str, Any]:
    data = base_config(
        shopmonkey={"webhook_secrets": [SECRET], "api_key": ""},
        twilio={
            "base_url": twilio.url,
            "account_sid": twilio.account_sid,
            "auth_token": twilio.auth_token,
            "from_number": "+15125550199",
            "messages_per_second": 1000,
        },
        touchpoints={"interval": "1s", "concurrency": 200, "batch_size": 100, "lease": "60s"},
        compliance={"quiet_hours": "00:00-24:00"},
        logging={"level": "warning", "format": "json"},
        sequences={
            "default": [
                {
                    "name": "ack",
                    "channel": "sms",
                    "delay": "0s",
                    "after": "created",
                    "template": "Hi {{ customer.first_name }}, thanks for your request!",
                }
            ],
            "later": [
                {
                    "name": "later",
                    "channel": "sms",
                    "delay": "1h",
                    "after": "created",
                    "template": "Hi {{ customer.first_name }}, still interested?",
                }
            ],
        },
    )
    second = dict(
        data["locations"][0], id="uptown", shopmonkey_location_id="loc-sm-2", sequence="later"
    )
    data["locations"].append(second)
    data["database"] = {"url": database_url, "pool_min": 5, "pool_max": 40}
    data["http"] = {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}"}
    return data


def order(phone: str, location: str) -> bytes:
    return json.dumps(
        {
            "operation": "INSERT",
            "table": "order",
            "data": {
                "id": str(uuid.uuid4()),
                "number": 1,
                "locationId": location,
                "customerId": str(uuid.uuid4()),
                "meta": {"version": 1},
                "customer": {
                    "firstName": "Bench",
                    "phoneNumbers": [{"number": phone, "primary": True}],
                    "emails": [],
                },
            },
        }
    ).encode()


async def post(http: aiohttp.ClientSession, url: str, body: bytes) -> None:
    headers = sign_webhook(
        body, SECRET, msg_id=f"msg_{uuid.uuid4().hex}", timestamp=int(time.time())
    )
    headers["Content-Type"] = "application/json"
    async with http.post(f"{url}/webhooks/shopmonkey/order", data=body, headers=headers) as r:
        if r.status != 200:
            raise RuntimeError(f"webhook answered {r.status}: {await r.text()}")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def speed_to_lead(
    proc: DaemonProcess, twilio: FakeTwilio, numbers: list[str], rate: float
) -> dict[str, Any]:
    started: dict[str, float] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:
        t0 = time.monotonic() + 0.1

        async def one(i: int, phone: str) -> None:
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            started[phone] = time.monotonic()
            await post(http, proc.url, order(phone, "loc-sm-1"))

        await asyncio.gather(*(one(i, p) for i, p in enumerate(numbers)))
        posted = time.monotonic() - t0
    await wait_for(lambda: len(twilio.messages) >= len(numbers), timeout=120, interval=0.1)
    got = {m["to"]: m["received_at"] for m in twilio.messages}
    lat = [(got[p] - started[p]) * 1000 for p in numbers]
    return {
        "leads": len(numbers),
        "offered_rate": rate,
        "achieved_rate": round(len(numbers) / posted, 1),
        "p50_ms": round(pct(lat, 50), 1),
        "p90_ms": round(pct(lat, 90), 1),
        "p99_ms": round(pct(lat, 99), 1),
        "max_ms": round(max(lat), 1),
        "mean_ms": round(statistics.fmean(lat), 1),
        "duplicates": len(twilio.messages) - len(got),
    }


async def dispatch(
    proc: DaemonProcess, twilio: FakeTwilio, numbers: list[str], db_url: str
) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as http:
        sem = asyncio.Semaphore(50)

        async def one(phone: str) -> None:
            async with sem:
                await post(http, proc.url, order(phone, "loc-sm-2"))

        await asyncio.gather(*(one(p) for p in numbers))
    conn = await asyncpg.connect(db_url)
    try:

        async def enriched() -> bool:
            n = await conn.fetchval(
                "SELECT count(*) FROM leads WHERE location_id = 'uptown'"
                " AND enrichment_status = 'done'"
            )
            return bool(n == len(numbers))

        await wait_for(enriched, timeout=120, interval=0.2)
        before = len(twilio.messages)
        await conn.execute(
            "UPDATE touch_points SET due_at = now() WHERE sequence = 'later' AND state = 'scheduled'"
        )
    finally:
        await conn.close()
    await wait_for(lambda: len(twilio.messages) - before >= len(numbers), timeout=120, interval=0.1)
    times = sorted(m["received_at"] for m in twilio.messages[before:])
    span = times[-1] - times[0]
    return {
        "messages": len(numbers),
        "provider_delay_ms": round(twilio.delay * 1000),
        "span_s": round(span, 2),
        "sends_per_s": round((len(times) - 1) / span, 1),
        "duplicates": len(twilio.messages)
        - before
        - len({m["to"] for m in twilio.messages[before:]}),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    server = os.environ.get("LEADD_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"bench_outreach_{os.getpid()}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    db_url = _with_db(server, name)
    numbers = phone_numbers(args.leads + args.dispatch)
    twilio = await FakeTwilio().start()
    twilio.delay = 0.2
    proc = DaemonProcess(
        config(db_url, twilio, free_port()), Path(tempfile.mkdtemp(prefix="leadd-bench-"))
    )
    try:
        proc.start()
        await proc.wait_ready(60)
        s2l = await speed_to_lead(proc, twilio, numbers[: args.leads], args.rate)
        disp = await dispatch(proc, twilio, numbers[args.leads :], db_url)
    finally:
        proc.terminate()
        await twilio.stop()
        admin = await asyncpg.connect(server)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return {
        "machine": f"{platform.machine()} {os.cpu_count()} CPU, Python {sys.version.split()[0]}",
        "speed_to_lead": s2l,
        "dispatch": disp,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--dispatch", type=int, default=2000)
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
