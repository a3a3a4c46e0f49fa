"""Soak: one `leadd run` process under 30 minutes (by default) of mixed load, watched for slow
leaks and broken promises.

    LEADD_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/soak.py [--minutes 30] [--rate 2] [--out soak.json] [--own-postgres]

A fresh database on that server (or, with --own-postgres, on a PostgreSQL of its own), the fake Twilio, SendGrid and Shopmonkey of
tests/fakes in this process, and the daemon as a child process. Every `1/rate` seconds a new
lead arrives: a signed webhook with the customer embedded (60 %), a webhook whose customer
enrichment must fetch (20 %), or an order only the poller finds (20 %); one e-mail in ten has
an apostrophe or ends in a non-ASCII letter. Each lead then lives:
its acknowledgement SMS and estimate e-mail go out at once, a follow-up SMS a minute later;
Twilio status callbacks and SendGrid events come back; some customers reply (20 %), some
text STOP (10 %), some e-mails bounce (5 %), some use the unsubscribe link (2 %), some orders
are updated (30 %); 1 % of webhooks are forged. /readyz and /metrics are scraped every 5 s.

Every 10 s: the daemon's RSS (/proc/PID/status), open file descriptors (/proc/PID/fd), its
PostgreSQL connections (pg_stat_activity) and task restarts (/metrics).

Promises checked at the end (exit status 1 if any is broken):
- RSS growth under 10 % from the end of the warm-up (first 10 %, at least 1 min) to the end;
- no task restarts; PostgreSQL connections never above the pool size; descriptors back to
  the warm-up level (+10) once the load stops;
- every order became a lead; every phone got exactly one acknowledgement; no SMS reached a
  phone after its STOP was answered; nobody got an e-mail twice;
- no full phone number, e-mail address, customer name or secret in any log line or HTTP
  response body (tests/chaos/pii.py).

Quiet hours are 00:00-24:00 here so the load does not depend on the time of day.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `tests` is not installed

from tests.chaos.harness import (  # noqa: E402
    SHOPMONKEY_KEY,
    Daemon,
    Http,
    Person,
    SendGridSigner,
    bench_database,
    cancel_on_sigterm,
    connections_to,
    daemon_config,
    metric,
    order,
    scalar,
    sql,
    wait_until,
)
from tests.chaos.pii import PiiScanner  # noqa: E402
from tests.chaos.scenarios import Chaos, chaos_world  # noqa: E402
from tests.fakes.sendgrid import FakeSendGrid  # noqa: E402
from tests.fakes.shopmonkey import FakeShopmonkey  # noqa: E402
from tests.fakes.twilio import FakeTwilio  # noqa: E402

ACK_TEXT = "Hi {{ customer.first_name }}, thanks for your request! {{ location.name }}"
SEQUENCE = {
    "default": [
        {"name": "ack", "channel": "sms", "delay": "0s", "after": "created", "template": ACK_TEXT},
        {
            "name": "estimate",
            "channel": "email",
            "delay": "0s",
            "after": "created",
            "subject": "Your estimate",
            "template": "Hi {{ customer.first_name }}, about your {{ vehicle.description }}.",
        },
        {
            "name": "follow-up",
            "channel": "sms",
            "delay": "60s",
            "after": "created",
            "only_in_states": ["new", "contacted"],
            "template": "Still interested in {{ services.names }}? Reply STOP to opt out.",
        },
    ]
}
POOL_MAX = 10


@dataclass
class Soak:
    chaos: Chaos
    daemon: Daemon
    twilio: FakeTwilio
    sendgrid: FakeSendGrid
    shop: FakeShopmonkey
    signer: SendGridSigner
    database_url: str
    rng: random.Random
    stops: dict[str, float] = field(default_factory=dict)  # phone -> STOP answered (monotonic)
    counts: Counter[str] = field(default_factory=Counter)
    samples: list[dict[str, Any]] = field(default_factory=list)
    lives: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def http(self) -> Http:
        return self.chaos.http

    # -- one lead's life ------------------------------------------------------------------

    async def life(self, person: Person) -> None:
        rng, base, shop = self.rng, self.daemon.url, self.shop
        kind = rng.random()
        data = order(person, embed=kind < 0.6)
        if kind >= 0.6:
            shop.add_customer(person.customer(data["customerId"]))
        if kind < 0.8:
            if rng.random() < 0.01:
                forged = await self.http.request(
                    "POST",
                    f"{base}/webhooks/shopmonkey/order",
                    data=json.dumps({"table": "order", "data": data}).encode(),
                    headers={
                        "webhook-id": "x",
                        "webhook-timestamp": "1",
                        "webhook-signature": "v1,x",
                    },
                )
                self.counts[f"forged:{forged.status}"] += 1
            reply = await self.http.post_order(base, data)
            self.counts[f"webhook:{reply.status}"] += 1
        shop.add_order(data)  # Shopmonkey has every order, whichever way it reached us

        sid = await self._sms_to(person.phone, 120)
        if sid is None:
            self.counts["ack_not_seen"] += 1
            return
        token = self.twilio.auth_token
        if rng.random() < 0.5:
            form = {"MessageSid": sid, "MessageStatus": "delivered", "To": person.phone}
            await self.http.post_twilio(base, "/webhooks/twilio/status", form, token)
        if rng.random() < 0.3:
            update = {**data, "meta": {"version": 2}, "authorized": True}
            self.counts[
                f"update:{(await self.http.post_order(base, update, 'UPDATE')).status}"
            ] += 1
        await asyncio.sleep(rng.uniform(1, 20))  # the customer reads the text
        r = rng.random()
        if r < 0.3:
            body = "STOP" if r < 0.1 else f"Yes, tomorrow works. {person.first}"
            form = {
                "From": person.phone,
                "To": "+15125550199",
                "Body": body,
                "MessageSid": "SM" + uuid.uuid4().hex,
            }
            reply = await self.http.post_twilio(base, "/webhooks/twilio/sms", form, token)
            self.counts[f"sms_in:{reply.status}"] += 1
            if body == "STOP" and reply.status == 200:
                self.stops[person.phone] = time.monotonic()
        mail = await self._mail_to(person.email, 60)
        if mail is None:
            return
        event = "bounce" if rng.random() < 0.05 else rng.choice(["delivered", "open"])
        events = [
            {
                "sg_event_id": uuid.uuid4().hex,
                "event": event,
                "email": person.email,
                **mail["body"]["personalizations"][0].get("custom_args", {}),
            }
        ]
        self.counts[
            f"events:{(await self.http.post_sendgrid(base, events, self.signer)).status}"
        ] += 1
        if rng.random() < 0.02:
            text = mail["body"]["content"][0]["value"]
            link = re.search(r"/unsubscribe/(\S+)", text)
            if link:
                for method in ("GET", "POST"):
                    reply = await self.http.request(method, f"{base}/unsubscribe/{link.group(1)}")
                    self.counts[f"unsubscribe:{reply.status}"] += 1

    async def _sms_to(self, phone: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.twilio.messages:
                if m["to"] == phone:
                    return str(m["sid"])
            await asyncio.sleep(0.5)  # the fake has no per-recipient event to wait on
        return None

    async def _mail_to(self, email: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.sendgrid.mails:
                if m["body"]["personalizations"][0]["to"][0]["email"] == email:
                    return m
            await asyncio.sleep(0.5)
        return None

    # -- watching ---------------------------------------------------------------------------

    async def sample(self, started: float) -> dict[str, Any]:
        samples = await self.daemon.metrics(self.http)
        name = self.database_url.rsplit("/", 1)[1]
        row = {
            "t": round(time.monotonic() - started),
            "rss_kib": self.daemon.rss_kib(),
            "fds": self.daemon.open_fds(),
            "pg_connections": await connections_to(self.database_url, name),
            "task_restarts": metric(samples, "leadd_task_restarts_total"),
            "leads": await scalar(self.database_url, "SELECT count(*) FROM leads"),
            "sms": len(self.twilio.messages),
            "mails": len(self.sendgrid.mails),
        }
        self.samples.append(row)
        return row


async def run(args: argparse.Namespace) -> dict[str, Any]:
    duration = args.minutes * 60
    warmup = max(60.0, duration * 0.1)
    crowd_size = int(duration * args.rate) + 50
    scanner = PiiScanner()
    cancel_on_sigterm()
    async with (
        bench_database("soak", own_server=args.own_postgres) as url,
        chaos_world(scanner) as chaos,
        FakeTwilio() as twilio,
        FakeSendGrid() as sendgrid,
        FakeShopmonkey(api_key=SHOPMONKEY_KEY) as shop,
    ):
        chaos.watch(twilio, sendgrid, shop)
        twilio.delay = sendgrid.delay = 0.05
        signer = SendGridSigner()
        cfg = daemon_config(
            url,
            twilio=twilio,
            sendgrid=sendgrid,
            shopmonkey=shop,
            poll_interval="5s",
            sequences=SEQUENCE,
            touchpoints={"lease": "60s", "retry_base": "5s", "retry_cap": "60s", "max_attempts": 8},
            compliance={"quiet_hours": "00:00-24:00"},
            logging={"level": "info", "format": "json"},
        )
        cfg["sendgrid"]["event_webhook_public_key"] = signer.public_key
        cfg["database"]["pool_max"] = POOL_MAX
        daemon = chaos.start(cfg, "soak")
        await daemon.wait_ready(60)
        soak = Soak(chaos, daemon, twilio, sendgrid, shop, signer, url, random.Random(11))
        crowd = chaos.crowd(crowd_size, seed=99, tricky_every=20)
        started = time.monotonic()
        next_sample = next_scrape = started
        i = 0
        baseline: dict[str, Any] | None = None
        while time.monotonic() - started < duration:
            now = time.monotonic()
            if now >= started + i / args.rate:
                task = asyncio.create_task(soak.life(crowd[i]))
                soak.lives.add(task)
                task.add_done_callback(soak.lives.discard)
                i += 1
            if now >= next_scrape:
                for path in ("/readyz", "/metrics"):
                    await soak.http.get(daemon.url + path)
                next_scrape = now + 5
            if now >= next_sample:
                row = await soak.sample(started)
                if baseline is None and row["t"] >= warmup:
                    baseline = row
                if args.verbose:
                    print(json.dumps(row), file=sys.stderr, flush=True)
                next_sample = now + 10
            await asyncio.sleep(
                max(0.0, min(started + i / args.rate, next_scrape) - time.monotonic())
            )
        end_of_load = await soak.sample(started)
        await asyncio.gather(*soak.lives, return_exceptions=True)

        async def drained() -> bool:
            due = await scalar(
                url,
                "SELECT count(*) FROM touch_points WHERE state IN ('scheduled', 'sending')"
                " AND due_at <= now()",
            )
            return int(due) == 0

        try:
            soak.counts["drain_s"] = round(await wait_until(drained, timeout=180, interval=1))
        except AssertionError:
            soak.counts["drain_timed_out"] = 1
        await asyncio.sleep(30)  # idle: descriptors and connections settle
        idle = await soak.sample(started)
        stored = {r[0] for r in await sql(url, "SELECT shopmonkey_order_id FROM leads")}
        exit_code = daemon.terminate()
    assert baseline is not None, "the run was shorter than its warm-up"
    return verdict(soak, scanner, baseline, end_of_load, idle, stored, exit_code, args)


def verdict(
    soak: Soak,
    scanner: PiiScanner,
    baseline: dict[str, Any],
    end: dict[str, Any],
    idle: dict[str, Any],
    stored: set[str],
    exit_code: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    acks = Counter(m["to"] for m in soak.twilio.messages if "thanks for your request" in m["body"])
    mails = soak.sendgrid.counts_by_recipient()
    after_stop = [
        m["to"]
        for m in soak.twilio.messages
        if m["to"] in soak.stops and m["received_at"] > soak.stops[m["to"]]
    ]
    rss_growth = (end["rss_kib"] - baseline["rss_kib"]) / baseline["rss_kib"] * 100
    leaks = scanner.leaks()
    checks = {
        "rss_growth_under_10_percent": rss_growth < 10,
        "no_task_restarts": max(s["task_restarts"] for s in soak.samples) == 0,
        "pg_connections_within_pool": max(s["pg_connections"] for s in soak.samples) <= POOL_MAX,
        "fds_back_to_warmup_level": idle["fds"] <= baseline["fds"] + 10,
        "every_order_stored": set(soak.shop.orders) <= stored,
        "one_ack_per_phone": set(acks.values()) == {1},
        "no_sms_after_stop": not after_stop,
        "no_mail_twice": set(mails.values()) <= {1},
        "no_leaks_in_logs_or_bodies": not leaks,
        "clean_exit": exit_code == 0,
    }
    return {
        "machine": f"{platform.machine()} {os.cpu_count()} CPU, Python {sys.version.split()[0]}",
        "minutes": args.minutes,
        "rate_leads_per_s": args.rate,
        "leads": len(soak.shop.orders),
        "sms": len(soak.twilio.messages),
        "mails": len(soak.sendgrid.mails),
        "stops": len(soak.stops),
        "requests": dict(sorted(soak.counts.items())),
        "rss_kib": {
            "warmup_end": baseline["rss_kib"],
            "load_end": end["rss_kib"],
            "max": max(s["rss_kib"] for s in soak.samples),
            "growth_percent": round(rss_growth, 2),
        },
        "fds": {
            "warmup_end": baseline["fds"],
            "load_end": end["fds"],
            "idle": idle["fds"],
            "max": max(s["fds"] for s in soak.samples),
        },
        "pg_connections": {
            "max": max(s["pg_connections"] for s in soak.samples),
            "median": statistics.median(s["pg_connections"] for s in soak.samples),
            "idle": idle["pg_connections"],
        },
        "task_restarts": max(s["task_restarts"] for s in soak.samples),
        "sms_after_stop": after_stop[:10],
        "leak_count": len(leaks),
        "leaks": [str(leak) for leak in leaks[:10]],
        "checks": checks,
        "ok": all(checks.values()),
        "samples": soak.samples if args.samples else len(soak.samples),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=2.0, help="new leads per second")
    parser.add_argument("--out", type=Path, help="also write the result (JSON) here")
    parser.add_argument("--samples", action="store_true", help="include every sample")
    parser.add_argument("--verbose", action="store_true", help="print samples as they come")
    parser.add_argument("--own-postgres", action="store_true", help="a PostgreSQL of its own")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
