"""Shared pieces of the outreach end-to-end tests: config for a daemon wired to the fake
providers, a signed order webhook that embeds its customer (no Shopmonkey API needed), signed
inbound SMS, a hold on the Twilio rate limiter, one touch-point cycle on a chosen clock, and
small database readers."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import json
import time
import uuid
from collections import Counter
from typing import Any

import aiohttp
import asyncpg
import pytest
from twilio.request_validator import RequestValidator

from leadd.config import Config
from leadd.daemon import Daemon
from leadd.loops import enrichment as enrichment_loop
from leadd.loops import touchpoints
from leadd.providers import sendgrid as sendgrid_module
from leadd.providers import twilio as twilio_module
from leadd.providers.shopmonkey_webhook import sign_webhook
from leadd.ratelimit import RateLimiter
from leadd.runtime import Clock, Runtime
from tests.conftest import base_config, make_config
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.twilio import FakeTwilio
from tests.helpers import base_url

SECRET = "test-secret"
PUBLIC = "https://leads.example.com"
SMS_FROM = "+15125550199"
# Chicago (312): one time zone, IL has no state rule stricter than the 09:00-20:00 default.
PHONE = "+13125550123"


class PinnedClock:
    """A clock the test sets (`now`) and moves forward by hand."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def runtime(
    daemon: Daemon, *, clock: Clock | None = None, instance_id: str | None = None
) -> Runtime:
    """The daemon's runtime, seen on another clock or as another lease owner."""
    rt = daemon.runtime
    assert rt is not None, "the daemon's database is not ready"
    return dataclasses.replace(
        rt, clock=clock or rt.clock, instance_id=instance_id or rt.instance_id
    )


async def cycle(daemon: Daemon, *, clock: Clock | None = None, full: bool = True) -> Counter[str]:
    """One enrichment and one touch-point cycle run beside the daemon's own loops, as those
    loops run them (shutdown and wake-up events), on `clock` when given."""
    rt = runtime(daemon, clock=clock)
    await enrichment_loop.run_once(rt, shutdown=daemon.shutdown)
    return await touchpoints.run_once(
        rt,
        full=full,
        shutdown=daemon.shutdown,
        wake_event=daemon.wake_touchpoints,
        beat=functools.partial(daemon.supervisor.beat, "touchpoints"),
    )


def provider_sections(
    twilio: FakeTwilio, sendgrid: FakeSendGrid | None = None, sendgrid_key: str = ""
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "twilio": {
            "base_url": twilio.url,
            "account_sid": twilio.account_sid,
            "auth_token": twilio.auth_token,
            "from_number": SMS_FROM,
            "messages_per_second": 1000,
        }
    }
    if sendgrid is not None:
        out["sendgrid"] = {
            "base_url": sendgrid.url,
            "api_key": sendgrid.api_key,
            "from_email": "service@acme.example",
            "event_webhook_public_key": sendgrid_key,
        }
    return out


def sms_only(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"default": list(steps)}


def outreach_config(
    database_url: str,
    twilio: FakeTwilio,
    sendgrid: FakeSendGrid | None = None,
    *,
    sequences: dict[str, Any] | None = None,
    touchpoints: dict[str, Any] | None = None,
    sendgrid_key: str = "",
    **overrides: Any,
) -> Config:
    tp = {"interval": "30s", "retry_base": "100ms", "retry_cap": "1s", "lease": "30s"}
    tp["reconcile_delay"] = "100ms"  # a send in doubt is looked up at once (production: 5 s)
    tp.update(touchpoints or {})
    return make_config(
        database_url,
        **provider_sections(twilio, sendgrid, sendgrid_key),
        touchpoints=tp,
        sequences=sequences
        or sms_only(
            {
                "name": "ack",
                "channel": "sms",
                "delay": "0s",
                "after": "created",
                "template": "Hi {{ customer.first_name }}, thanks from {{ location.name }}!",
            }
        ),
        **overrides,
    )


def order_payload(
    *, phone: str | None = PHONE, email: str | None = None, first_name: str = "Jamie"
) -> dict[str, Any]:
    customer: dict[str, Any] = {"firstName": first_name, "lastName": "Rivera"}
    customer["phoneNumbers"] = [{"number": phone, "primary": True}] if phone else []
    customer["emails"] = [{"email": email, "primary": True}] if email else []
    return {
        "operation": "INSERT",
        "table": "order",
        "data": {
            "id": str(uuid.uuid4()),
            "number": 1042,
            "locationId": "loc-sm-1",
            "customerId": str(uuid.uuid4()),
            "meta": {"version": 1},
            "generatedVehicleName": "2016 Honda Civic",
            "customer": customer,
            "vehicle": {"year": 2016, "make": "Honda", "model": "Civic"},
            "services": [{"name": "Oil change", "totalCents": 9999}],
        },
    }


async def post_order(
    session: aiohttp.ClientSession,
    base: str,
    payload: dict[str, Any],
    secret: str = SECRET,
    *,
    at: dt.datetime | None = None,
) -> str:
    """POST a signed order webhook, signed now or `at` (a daemon on a pinned clock checks
    the signature's timestamp on that clock); returns the new lead id."""
    body = json.dumps(payload).encode()
    timestamp = int(at.timestamp() if at is not None else time.time())
    headers = sign_webhook(body, secret, msg_id=f"msg_{uuid.uuid4().hex}", timestamp=timestamp)
    headers["Content-Type"] = "application/json"
    async with session.post(f"{base}/webhooks/shopmonkey/order", data=body, headers=headers) as r:
        answer = await r.json()
        assert r.status == 200, answer
        return str(answer["leadId"])


async def touch_points(url: str, lead_id: str | None = None) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        if lead_id is None:
            return await conn.fetch("SELECT * FROM touch_points ORDER BY id")
        return await conn.fetch(
            "SELECT * FROM touch_points WHERE lead_id = $1 ORDER BY step_index", uuid.UUID(lead_id)
        )
    finally:
        await conn.close()


async def sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def base_with_providers(
    database_url: str, twilio: FakeTwilio, port: int, **overrides: Any
) -> dict[str, Any]:
    """A config dict (for `leadd run` subprocesses) wired to the fakes and a fixed port."""
    data = base_config(**provider_sections(twilio), **overrides)
    data["database"] = {"url": database_url}
    data["http"] = {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}"}
    return data


async def twilio_post(
    http: aiohttp.ClientSession,
    daemon: Any,
    path: str,
    params: dict[str, str],
    *,
    token: str,
    signed_url: str | None = None,
) -> tuple[int, str]:
    """POST a Twilio webhook signed the way Twilio signs it (the official RequestValidator)."""
    url = signed_url or PUBLIC + path
    signature = RequestValidator(token).compute_signature(url, params)
    async with http.post(
        base_url(daemon) + path, data=params, headers={"X-Twilio-Signature": signature}
    ) as r:
        return r.status, await r.text()


def inbound(body: str, sid: str, phone: str = PHONE) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": phone,
        "To": "+15125550199",
        "Body": body,
        "NumMedia": "0",
    }


class LimiterHold:
    """Holds every send at its client's rate limiter (each Twilio sender's, SendGrid's),
    before the real token bucket, until the test lets it go: "a send waiting for its slot"
    without timing. Installed for the whole test, before the daemon builds its clients;
    holds only while `armed`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = False
        self.waiting = 0
        self._changed = asyncio.Condition()
        self._tickets = asyncio.Semaphore(0)
        hold = self

        class HeldLimiter(RateLimiter):
            async def acquire(self) -> None:
                if hold.armed:
                    await hold._enter()
                await super().acquire()

        monkeypatch.setattr(twilio_module, "RateLimiter", HeldLimiter)
        monkeypatch.setattr(sendgrid_module, "RateLimiter", HeldLimiter)

    async def _enter(self) -> None:
        async with self._changed:
            self.waiting += 1
            self._changed.notify_all()
        await self._tickets.acquire()
        async with self._changed:
            self.waiting -= 1
            self._changed.notify_all()

    async def until_waiting(self, n: int, timeout: float = 10.0) -> None:
        """Return once `n` sends wait at the limiter."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.waiting >= n), timeout)

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self._tickets.release()
