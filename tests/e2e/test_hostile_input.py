"""Hostile input at every HTTP route of the real daemon: never a 5xx, never a traceback.

Each request is built byte by byte (tests/e2e/raw_http.py), so it can carry what a client
library would refuse to send. Where the route is signed, the hostile value is signed correctly
too: a leaked key or a provider bug must still get a clear 4xx, not a crash. Bad requests
change nothing; one bad event in a SendGrid batch is skipped and counted, not the batch.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator

from leadd.daemon import Daemon
from leadd.providers.shopmonkey_webhook import sign_webhook
from tests.e2e.outreach_support import (
    PHONE,
    PUBLIC,
    SECRET,
    order_payload,
    outreach_config,
    post_order,
    sql,
)
from tests.e2e.raw_http import Answer, database_unreachable, exchange, request_bytes
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.twilio import FakeTwilio
from tests.helpers import base_url, running_daemon, wait_for

JSON = ("Content-Type", "application/json")
FORM = ("Content-Type", "application/x-www-form-urlencoded")
TABLES = ("leads", "contact_optouts", "chat_messages", "message_status", "email_events")


@dataclass(frozen=True)
class Ctx:
    twilio_token: str
    sg_key: ec.EllipticCurvePrivateKey


Builder = Callable[[Ctx], bytes]


@pytest.fixture(scope="module")
def sg_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, base64.b64encode(der).decode()


# ----------------------------------------------------------------------------- Shopmonkey


def shopmonkey_request(
    body: bytes = b"{}",
    *,
    timestamp: str | None = None,
    msg_id: str | bytes | None = None,
    content_type: str = "application/json",
    extra: tuple[tuple[str, str | bytes], ...] = (),
) -> Builder:
    def build(ctx: Ctx) -> bytes:
        signed = sign_webhook(body, SECRET, msg_id="msg_1", timestamp=int(time.time()))
        headers: dict[str, str | bytes] = dict(signed)
        if timestamp is not None:
            headers = dict(sign_webhook(body, SECRET, msg_id="msg_1", timestamp=0))
            headers["webhook-timestamp"] = timestamp
        if msg_id is not None:
            headers["webhook-id"] = msg_id
        return request_bytes(
            "POST",
            "/webhooks/shopmonkey/order",
            headers=[("Content-Type", content_type), *headers.items(), *extra],
            body=body,
        )

    return build


SHOPMONKEY: dict[str, Builder] = {
    "timestamp-5000-digits": shopmonkey_request(timestamp="9" * 5000),
    "timestamp-superscript": shopmonkey_request(timestamp="²"),
    "timestamp-negative": shopmonkey_request(timestamp="-1"),
    "webhook-id-invalid-utf8": shopmonkey_request(msg_id=b"\xff\xfe"),
    "nul-in-order": shopmonkey_request(
        json.dumps({"table": "order", "data": {"id": "a\u0000"}}).encode()
    ),
    "json-nested-100000": shopmonkey_request(b"[" * 100_000 + b"]" * 100_000),
    "not-json": shopmonkey_request(b"\xff\x00garbage"),
    "multipart-no-boundary": shopmonkey_request(content_type="multipart/form-data"),
    "gzip-claimed": shopmonkey_request(
        b"\x1f\x8b\x08\x00garbage", extra=(("Content-Encoding", "gzip"),)
    ),
    "content-length-over-limit": lambda ctx: request_bytes(
        "POST",
        "/webhooks/shopmonkey/order",
        headers=[JSON, ("Content-Length", str(50 * 1024 * 1024))],
        body=b"{}",
    ),
    "unsigned": lambda ctx: request_bytes(
        "POST", "/webhooks/shopmonkey/order", headers=[JSON], body=b"{}"
    ),
}

# ----------------------------------------------------------------------------- Twilio


def twilio_request(
    path: str,
    params: dict[str, str] | None = None,
    *,
    content_type: str = "application/x-www-form-urlencoded",
    body: bytes | None = None,
    sign: bool = True,
) -> Builder:
    def build(ctx: Ctx) -> bytes:
        form = params or {}
        raw = urlencode(form).encode() if body is None else body
        headers: list[tuple[str, str | bytes]] = [("Content-Type", content_type)]
        if sign:
            signature = RequestValidator(ctx.twilio_token).compute_signature(PUBLIC + path, form)
            headers.append(("X-Twilio-Signature", signature))
        return request_bytes("POST", path, headers=headers, body=raw)

    return build


def sms(body: str = "hi", sid: str = "SM" + "a" * 32, phone: str = PHONE) -> dict[str, str]:
    return {"MessageSid": sid, "SmsSid": sid, "From": phone, "To": "+15125550199", "Body": body}


def twilio_cases(path: str, params: dict[str, str]) -> dict[str, Builder]:
    """What breaks form parsing; the same for both Twilio callbacks."""
    return {
        "charset-bogus": twilio_request(
            path, params, content_type="application/x-www-form-urlencoded; charset=bogus"
        ),
        "charset-utf-16": twilio_request(
            path, params, content_type="application/x-www-form-urlencoded; charset=utf-16"
        ),
        "multipart-no-boundary": twilio_request(path, params, content_type="multipart/form-data"),
        "multipart-bad-boundary": twilio_request(
            path, params, content_type="multipart/form-data; boundary=x", body=b"--y\r\n\r\n"
        ),
        "invalid-utf8-raw": twilio_request(path, params, body=b"Body=\xff\xfe&From=%2B1"),
        "invalid-utf8-escaped": twilio_request(path, params, body=b"Body=%ff%fe&From=%2B1"),
        "json-body": twilio_request(path, params, content_type="application/json", body=b"{}"),
        "unsigned": twilio_request(path, params, sign=False),
    }


TWILIO_SMS: dict[str, Builder] = {
    **twilio_cases("/webhooks/twilio/sms", sms()),
    "signed-nul-in-body": twilio_request("/webhooks/twilio/sms", sms(body="STOP\x00")),
    "signed-nul-in-from": twilio_request("/webhooks/twilio/sms", sms(phone="+1312\x005550123")),
    "signed-huge-sid": twilio_request("/webhooks/twilio/sms", sms(sid="SM" + "9" * 5000)),
    "signed-huge-from-stop": twilio_request(
        "/webhooks/twilio/sms", sms(body="STOP", phone="+1" * 3000)
    ),
    "signed-huge-body": twilio_request("/webhooks/twilio/sms", sms(body="x" * 200_000)),
    "signed-no-fields": twilio_request("/webhooks/twilio/sms", {}),
}

STATUS = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "delivered", "To": PHONE}
TWILIO_STATUS: dict[str, Builder] = {
    **twilio_cases("/webhooks/twilio/status", STATUS),
    "signed-huge-sid": twilio_request(
        "/webhooks/twilio/status", {**STATUS, "MessageSid": "SM" + "9" * 5000}
    ),
    "signed-huge-error-code": twilio_request(
        "/webhooks/twilio/status", {**STATUS, "ErrorCode": "1" * 100_000}
    ),
    "signed-21610-huge-to": twilio_request(
        "/webhooks/twilio/status",
        {**STATUS, "MessageStatus": "failed", "ErrorCode": "21610", "To": "+1" * 3000},
    ),
    "signed-nul-status": twilio_request(
        "/webhooks/twilio/status", {**STATUS, "MessageStatus": "sent\x00"}
    ),
    "signed-unknown-status": twilio_request(
        "/webhooks/twilio/status", {**STATUS, "MessageStatus": "x"}
    ),
}

# ----------------------------------------------------------------------------- SendGrid


def sendgrid_request(body: bytes, *, timestamp: str | None = None, sign: bool = True) -> Builder:
    def build(ctx: Ctx) -> bytes:
        ts = timestamp if timestamp is not None else str(int(time.time()))
        signature = ctx.sg_key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        headers: list[tuple[str, str | bytes]] = [
            JSON,
            ("X-Twilio-Email-Event-Webhook-Timestamp", ts),
        ]
        if sign:
            headers.append(
                ("X-Twilio-Email-Event-Webhook-Signature", base64.b64encode(signature).decode())
            )
        return request_bytes("POST", "/webhooks/sendgrid/events", headers=headers, body=body)

    return build


def events(*items: Any) -> bytes:
    return json.dumps(list(items)).encode()


SENDGRID: dict[str, Builder] = {
    "timestamp-superscript": sendgrid_request(events(), timestamp="²"),
    "timestamp-arabic-digits": sendgrid_request(events(), timestamp="١٧٠٠٠٠٠٠٠٠"),
    "timestamp-5000-digits": sendgrid_request(events(), timestamp="9" * 5000),
    "timestamp-negative": sendgrid_request(events(), timestamp="-1"),
    "timestamp-invalid-utf8": lambda ctx: request_bytes(
        "POST",
        "/webhooks/sendgrid/events",
        headers=[JSON, ("X-Twilio-Email-Event-Webhook-Timestamp", b"\xff\xfe")],
        body=b"[]",
    ),
    "not-json": sendgrid_request(b"\xff{"),
    "not-a-list": sendgrid_request(b'{"event": "bounce"}'),
    "nested-100000": sendgrid_request(b"[" * 100_000 + b"]" * 100_000),
    "nan": sendgrid_request(b'[{"sg_event_id": "e", "event": "open", "x": NaN}]'),
    "unsigned": sendgrid_request(events(), sign=False),
}

# ----------------------------------------------------------------------------- unsubscribe


def unsubscribe(method: str, token: str) -> Builder:
    return lambda ctx: request_bytes(method, f"/unsubscribe/{token}")


UNSUBSCRIBE: dict[str, Builder] = {
    f"{method}-{name}": unsubscribe(method, token)
    for method in ("GET", "POST")
    for name, token in {
        "nul": "%00",
        "surrogate": "%ED%A0%80",
        "invalid-utf8": "%FF%FE",
        "long": "a" * 4000,
        "quote-script": "%27%3E%3Cscript%3E",
        "dot-dot": "..%2F..%2Fetc",
    }.items()
}

# ----------------------------------------------------------------------------- ops API

API_TOKEN = "ops-token-0123456789abcdef"
LEAD = "/api/v1/leads/00000000-0000-4000-8000-000000000001"


def api(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    content_type: str = "application/json",
    token: str | bytes = API_TOKEN,
) -> Builder:
    auth = b"Bearer " + (token if isinstance(token, bytes) else token.encode())
    headers: list[tuple[str, str | bytes]] = [("Authorization", auth)]
    if body:
        headers.append(("Content-Type", content_type))
    return lambda ctx: request_bytes(method, path, headers=headers, body=body)


OPS_API: dict[str, Builder] = {
    "limit-5000-digits": api("GET", "/api/v1/leads?limit=" + "9" * 5000),
    "limit-superscript": api("GET", "/api/v1/leads?limit=%C2%B2"),
    "since-garbage": api("GET", "/api/v1/leads?since=%00&until=%FF"),
    "cursor-garbage": api("GET", "/api/v1/leads?cursor=" + "%FF" * 100),
    "q-nul": api("GET", "/api/v1/leads?q=%00"),
    "state-bogus": api("GET", "/api/v1/leads?state=" + "x" * 5000),
    "lead-id-nul": api("GET", "/api/v1/leads/%00"),
    "lead-id-not-uuid": api("GET", "/api/v1/leads/" + "9" * 5000),
    "state-nul-reason": api(
        "POST", LEAD + "/state", json.dumps({"state": "lost", "reason": "x\u0000"}).encode()
    ),
    "state-nested": api("POST", LEAD + "/state", b"[" * 100_000 + b"]" * 100_000),
    "state-nan": api("POST", LEAD + "/state", b'{"state": NaN}'),
    "state-charset-bogus": api(
        "POST", LEAD + "/state", b"{}", content_type="application/json; charset=bogus"
    ),
    "message-surrogate": api("POST", LEAD + "/messages", b'{"channel": "sms", "body": "\\ud800"}'),
    "message-huge": api(
        "POST", LEAD + "/messages", json.dumps({"channel": "sms", "body": "x" * 900_000}).encode()
    ),
    "opt-out-nul": api("DELETE", "/api/v1/opt-outs/sms/%00"),
    "opt-out-huge": api("DELETE", "/api/v1/opt-outs/email/" + "a" * 5000 + "%40example.com"),
    "report-garbage": api("GET", "/api/v1/report?since=" + "9" * 5000),
    "token-invalid-utf8": api("GET", "/api/v1/leads", token=b"\xff\xfe"),
    "token-wrong": api("GET", "/api/v1/leads", token="nope"),
}

# ----------------------------------------------------------------------------- the rest

OTHER: dict[str, Builder] = {
    "healthz-with-body": lambda ctx: request_bytes("GET", "/healthz", body=b"x" * 1000),
    "readyz-query": lambda ctx: request_bytes("GET", "/readyz?%00=%ff"),
    "metrics-post": lambda ctx: request_bytes("POST", "/metrics", body=b"x"),
    "unknown-path": lambda ctx: request_bytes("GET", "/%00/%ff/.."),
    "header-invalid-utf8": lambda ctx: request_bytes(
        "GET", "/healthz", headers=[("X-Whatever", b"\xff\xfe\x80")]
    ),
    "huge-header": lambda ctx: request_bytes("GET", "/healthz", headers=[("X-Big", "x" * 100_000)]),
    "bad-content-length": lambda ctx: request_bytes(
        "POST", "/webhooks/shopmonkey/order", headers=[("Content-Length", "-1")]
    ),
    "chunked-garbage": lambda ctx: request_bytes(
        "POST",
        "/webhooks/sendgrid/events",
        headers=[("Transfer-Encoding", "chunked")],
        body=b"zz\r\nxx\r\n0\r\n\r\n",
        content_length=False,
    ),
}

# Harmless oddities that may be answered normally; every other case must be a 4xx.
MAY_SUCCEED = {"healthz-with-body", "readyz-query", "header-invalid-utf8"}

ROUTES: dict[str, dict[str, Builder]] = {
    "shopmonkey-order": SHOPMONKEY,
    "twilio-sms": TWILIO_SMS,
    "twilio-status": TWILIO_STATUS,
    "sendgrid-events": SENDGRID,
    "unsubscribe": UNSUBSCRIBE,
    "ops-api": OPS_API,
    "other": OTHER,
}


async def counts(url: str) -> dict[str, int]:
    return {t: (await sql(url, f"SELECT count(*) AS n FROM {t}"))[0]["n"] for t in TABLES}


@pytest.mark.parametrize("route", list(ROUTES))
async def test_hostile_requests_are_4xx_and_change_nothing(
    route: str,
    database_url: str,
    twilio: FakeTwilio,
    sg_key: tuple[ec.EllipticCurvePrivateKey, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every hostile request to the route is answered 4xx with a JSON reason (or aiohttp's
    own 400 for what it cannot parse), nothing is stored, and nothing is logged as an error."""
    key, public_b64 = sg_key
    async with FakeSendGrid() as fake_sg:
        cfg = outreach_config(
            database_url,
            twilio,
            fake_sg,
            sendgrid_key=public_b64,
            touchpoints={"interval": "1h"},
            api={"tokens": [{"name": "ops", "token": API_TOKEN, "role": "write"}]},
        )
        ctx = Ctx(twilio_token=cfg.twilio.auth_token, sg_key=key)
        with caplog.at_level(logging.WARNING):
            async with running_daemon(cfg) as daemon:
                before = await counts(database_url)
                answers: dict[str, Answer] = {}
                for name, build in ROUTES[route].items():
                    answers[name] = await exchange(_port(daemon), build(ctx))
                after = await counts(database_url)
    wrong = {
        n: (a.status, a.body[:200])
        for n, a in answers.items()
        if a.status >= 500 or (a.status < 400 and n not in MAY_SUCCEED)
    }
    assert wrong == {}
    assert after == before
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


def _port(daemon: Daemon) -> int:
    assert daemon.http_port is not None
    return daemon.http_port


async def test_one_bad_event_in_a_sendgrid_batch_is_skipped_and_counted(
    database_url: str,
    twilio: FakeTwilio,
    http: aiohttp.ClientSession,
    sg_key: tuple[ec.EllipticCurvePrivateKey, str],
) -> None:
    """A batch is many independent records: the good ones are stored, each bad one is skipped
    and counted (answer and metric), and a redelivery stores nothing twice."""
    key, public_b64 = sg_key
    now = int(time.time())
    good = [
        {"sg_event_id": f"ok-{i}", "event": "delivered", "email": "a@example.com", "timestamp": now}
        for i in range(3)
    ]
    bad: list[Any] = [
        {"sg_event_id": "b-1", "event": "open", "touch_point_id": "9" * 5000},
        {"sg_event_id": "b-2", "event": "open", "touch_point_id": "9" * 30},
        {"sg_event_id": "b-3", "event": "bounce", "email": "x\u0000@example.com"},
        {"sg_event_id": "b-4", "event": "open", "useragent": "\ud800"},
        {"sg_event_id": "b-5" + "x" * 10_000, "event": "open"},
        {"sg_event_id": "b-6", "event": "open", "sg_message_id": "m" * 10_000},
        "not an object",
        {"sg_event_id": 7, "event": "open"},
    ]
    body = events(good[0], *bad[:4], good[1], *bad[4:], good[2])
    async with FakeSendGrid() as fake_sg:
        cfg = outreach_config(database_url, twilio, fake_sg, sendgrid_key=public_b64)
        async with running_daemon(cfg) as daemon:
            ctx = Ctx(twilio_token="", sg_key=key)
            answer = await exchange(_port(daemon), sendgrid_request(body)(ctx))
            assert answer.status == 200, answer.body
            assert answer.json() == {
                "success": True,
                "received": len(good) + len(bad),
                "new": len(good),
                "skipped": len(bad),
            }
            rows = await sql(database_url, "SELECT sg_event_id FROM email_events ORDER BY 1")
            assert [r["sg_event_id"] for r in rows] == ["ok-0", "ok-1", "ok-2"]
            assert await sql(database_url, "SELECT * FROM contact_optouts") == []
            again = await exchange(_port(daemon), sendgrid_request(body)(ctx))
            assert again.json()["new"] == 0
            async with http.get(base_url(daemon) + "/metrics") as r:
                text = await r.text()
            line = 'leadd_webhooks_rejected_total{provider="sendgrid",reason="invalid_event"}'
            assert f"{line} {2.0 * len(bad)}" in text


async def test_twilio_and_sendgrid_answer_503_json_while_the_database_is_down(
    database_url: str,
    twilio: FakeTwilio,
    http: aiohttp.ClientSession,
    sg_key: tuple[ec.EllipticCurvePrivateKey, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Like the Shopmonkey webhook: a database error is a 503 with a JSON reason (the provider
    retries), not a 500 with a traceback; once the database is back the same request works."""
    key, public_b64 = sg_key
    async with FakeSendGrid() as fake_sg:
        cfg = outreach_config(
            database_url, twilio, fake_sg, sendgrid_key=public_b64, touchpoints={"interval": "1h"}
        )
        ctx = Ctx(twilio_token=cfg.twilio.auth_token, sg_key=key)
        requests = {
            "sms": twilio_request("/webhooks/twilio/sms", sms("STOP")),
            "status": twilio_request("/webhooks/twilio/status", STATUS),
            "events": sendgrid_request(events({"sg_event_id": "e-1", "event": "open"})),
        }
        async with running_daemon(cfg) as daemon:
            await post_order(http, base_url(daemon), order_payload())
            with caplog.at_level(logging.WARNING):
                async with database_unreachable(database_url):
                    down = {n: await exchange(_port(daemon), b(ctx)) for n, b in requests.items()}
            assert {n: a.status for n, a in down.items()} == dict.fromkeys(requests, 503)
            for a in down.values():
                assert a.headers["content-type"].startswith("application/json")
                assert a.json()["success"] is False and "retry" in a.json()["error"]
            http_logs = ("leadd.web", "leadd.conversations", "aiohttp.server")
            assert not [r for r in caplog.records if r.exc_info and r.name.startswith(http_logs)]

            async def back() -> bool:
                answer = await exchange(_port(daemon), requests["events"](ctx))
                return answer.status == 200

            await wait_for(back, timeout=20, interval=0.2)
            up = {n: await exchange(_port(daemon), b(ctx)) for n, b in requests.items()}
            assert {n: a.status for n, a in up.items()} == {
                "sms": 200,
                "status": 204,
                "events": 200,
            }
            [opt] = await sql(database_url, "SELECT reason FROM contact_optouts")
            assert opt["reason"] == "keyword"


async def test_a_client_that_disconnects_mid_body_is_not_an_error(
    database_url: str, twilio: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    """Half a body then a closed socket: the handler's read fails, which is the client's doing,
    so it is logged below ERROR and without a traceback, and the daemon serves on."""
    cfg = outreach_config(database_url, twilio)
    with caplog.at_level(logging.DEBUG):
        async with running_daemon(cfg) as daemon:
            for path in ("/webhooks/shopmonkey/order", "/webhooks/sendgrid/events"):
                head = request_bytes(
                    "POST", path, headers=[JSON, ("Content-Length", "100000")], body=b""
                )
                reader, writer = await asyncio.open_connection("127.0.0.1", _port(daemon))
                writer.write(head + b'{"half": ')
                await writer.drain()
                writer.close()
                await writer.wait_closed()

            def gone() -> list[str]:
                return [
                    r.getMessage() for r in caplog.records if r.getMessage() == "http.client_gone"
                ]

            await wait_for(lambda: len(gone()) == 2)
            answer = await exchange(_port(daemon), request_bytes("GET", "/healthz"))
            assert answer.status == 200
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
