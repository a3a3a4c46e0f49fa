"""Intake end to end: the real daemon, PostgreSQL and the fake Shopmonkey over a socket.

Every estimate request must become exactly one lead, whether it arrives by webhook, by the
poller, twice, late, out of order, forged, or while the database is down.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from leadd.backoff import Backoff
from leadd.daemon import Daemon
from leadd.intake import enrichment
from leadd.intake.events import parse_time
from leadd.loops import poll
from leadd.providers.shopmonkey_webhook import sign_webhook
from leadd.runtime import Runtime
from leadd.testlead import send_test_lead
from tests.conftest import make_config
from tests.fakes.shopmonkey import FakeShopmonkey
from tests.helpers import base_url, running_daemon, wait_for

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SECRET = "test-secret"
API_KEY = "sm-test-key"
JAMIE_PHONE = "+15125550123"
FAST = Backoff(base=0.01, cap=0.05, jitter=0.0)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order_event(
    operation: str = "INSERT",
    order_id: str | None = None,
    *,
    version: int | None = 1,
    **changes: Any,
) -> dict[str, Any]:
    """The fixture webhook body with a fresh order id, dates of now and `changes` applied."""
    payload = copy.deepcopy(fixture("shopmonkey-webhook-order-insert.json"))
    payload["operation"] = operation
    now = iso(dt.datetime.now(dt.UTC))
    data = payload["data"]
    data.update(id=order_id or str(uuid.uuid4()), createdDate=now, updatedDate=now)
    if version is None:
        del data["meta"]
    else:
        data["meta"] = {"version": version}
    data.update(changes)
    return payload


def signed(body: bytes, secret: str = SECRET, timestamp: float | None = None) -> dict[str, str]:
    headers = sign_webhook(
        body,
        secret,
        msg_id=f"msg_{uuid.uuid4().hex}",
        timestamp=int(time.time() if timestamp is None else timestamp),
    )
    return {**headers, "Content-Type": "application/json"}


async def post(
    daemon: Daemon, payload: Any = None, *, raw: bytes | None = None, **sign: Any
) -> tuple[int, dict[str, Any]]:
    """POST a signed order webhook (sign kwargs go to `signed`; headers=... overrides)."""
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = sign.pop("headers", None) or signed(body, **sign)
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{base_url(daemon)}/webhooks/shopmonkey/order", data=body, headers=headers) as r,
    ):
        return r.status, await r.json()


async def sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        await conn.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def lead_of(url: str, order_id: str) -> asyncpg.Record | None:
    rows = await sql(url, "SELECT * FROM leads WHERE shopmonkey_order_id = $1", order_id)
    return rows[0] if rows else None


async def events_of(daemon: Daemon, lead_id: str) -> list[tuple[str | None, str, str]]:
    """The lead's timeline, oldest first."""
    url = daemon.config.database.url
    assert url is not None
    query = "SELECT from_state, to_state, cause FROM lead_events WHERE lead_id = $1 ORDER BY id"
    rows = await sql(url, query, uuid.UUID(lead_id))
    return [(r["from_state"], r["to_state"], r["cause"]) for r in rows]


def runtime(daemon: Daemon) -> Runtime:
    """The running daemon's runtime (services and loops take it, never the daemon)."""
    assert daemon.runtime is not None
    return daemon.runtime


async def stored(daemon: Daemon) -> tuple[int, int]:
    assert daemon.db is not None
    return await daemon.db.count("leads"), await daemon.db.count("lead_events")


def shopmonkey_cfg(fake: FakeShopmonkey, **extra: Any) -> dict[str, Any]:
    # A long poll interval: the loop polls once at start-up, tests then call run_once.
    return {
        "webhook_secrets": [SECRET],
        "api_key": API_KEY,
        "base_url": fake.url,
        "poll_interval": "1h",
        "requests_per_second": 1000,
        **extra,
    }


@asynccontextmanager
async def polling_daemon(
    database_url: str, fake: FakeShopmonkey, **overrides: Any
) -> AsyncIterator[Daemon]:
    """A daemon polling `fake`, returned once its start-up poll cycle has finished."""
    cfg = make_config(database_url, shopmonkey=shopmonkey_cfg(fake), **overrides)
    async with running_daemon(cfg) as daemon:
        daemon.shopmonkey.backoff = FAST
        await wait_for(lambda: _finished_jobs(database_url), timeout=10)
        yield daemon


async def _finished_jobs(url: str) -> int:
    rows = await sql(url, "SELECT count(*) AS n FROM job_executions WHERE finished_at IS NOT NULL")
    return int(rows[0]["n"])


def shop_order(**changes: Any) -> dict[str, Any]:
    """An order as GET /v3/order lists it, with a fresh id and dates of now."""
    return order_event(**changes)["data"]


# --------------------------------------------------------------------------- signatures


async def test_signatures_at_the_http_level_store_only_verified_orders(database_url: str) -> None:
    """Valid Standard Webhooks signatures are stored; a wrong secret, a tampered body, a
    stale timestamp, no signature at all, or the legacy header (off by default: it has no
    timestamp) is a 401 with a reason and stores nothing."""
    async with running_daemon(make_config(database_url)) as daemon:
        rejected: list[tuple[str, bytes, dict[str, str], str]] = []
        body = json.dumps(order_event()).encode()
        rejected.append(
            ("wrong secret", body, signed(body, "other-secret"), "no signature matched")
        )
        tampered = body.replace(b'"number": 1000', b'"number": 1001')
        assert tampered != body
        rejected.append(("tampered", tampered, signed(body), "no signature matched"))
        rejected.append(
            ("stale", body, signed(body, timestamp=time.time() - 600), "outside tolerance")
        )
        rejected.append(
            ("future", body, signed(body, timestamp=time.time() + 600), "outside tolerance")
        )
        rejected.append(("unsigned", body, {"Content-Type": "application/json"}, "missing"))
        wrong_legacy = {"X-Shopmonkey-Signature": "ab" * 32}
        rejected.append(("legacy wrong", body, wrong_legacy, "accept_legacy_signature"))
        for name, raw, headers, reason in rejected:
            status, answer = await post(daemon, raw=raw, headers=headers)
            assert status == 401, name
            assert answer["success"] is False and reason in answer["error"], (name, answer)
        assert await stored(daemon) == (0, 0)

        status, answer = await post(daemon, raw=body)
        assert status == 200 and answer["success"] is True
        lead_id = answer["leadId"]
        assert uuid.UUID(lead_id)

        import hashlib
        import hmac

        legacy_body = json.dumps(order_event()).encode()
        digest = hmac.new(SECRET.encode(), legacy_body, hashlib.sha256).hexdigest()
        status, legacy = await post(
            daemon, raw=legacy_body, headers={"X-Shopmonkey-Signature": digest}
        )
        assert status == 401 and "not accepted" in legacy["error"]
        assert await stored(daemon) == (1, 1)


# --------------------------------------------------------------------------- bad input


async def test_bad_input_is_a_400_with_a_reason_and_stores_nothing(database_url: str) -> None:
    """Validly signed garbage is refused with a reason; the daemon keeps working after it."""
    cfg = make_config(database_url, http={"host": "127.0.0.1", "port": 0, "max_body_bytes": 65536})
    async with running_daemon(cfg) as daemon:
        no_id = order_event()
        del no_id["data"]["id"]
        deep: Any = "leaf"
        for _ in range(200):
            deep = [deep]
        cases: list[tuple[str, bytes, str]] = [
            ("not JSON", b"{not json", "not valid JSON"),
            ("invalid UTF-8", b'{"table": "order", "x": "\xff\xfe"}', "UTF-8"),
            ("NaN", b'{"table": "order", "x": NaN}', "NaN"),
            ("array", b"[1, 2, 3]", "JSON object"),
            ("no table", json.dumps({"data": {"id": "x"}}).encode(), "'table'"),
            ("missing data.id", json.dumps(no_id).encode(), "data.id"),
            ("wrong type", json.dumps(order_event(customerId=42)).encode(), "customerId"),
            ("bool number", json.dumps(order_event(number=True)).encode(), "number"),
            ("deep", json.dumps(order_event(customFields=deep)).encode(), "nested deeper"),
            ("NUL", json.dumps(order_event(complaint="a\x00b")).encode(), "NUL"),
            ("surrogate", json.dumps(order_event(complaint="\ud83d")).encode(), "surrogate"),
            ("huge version", json.dumps(order_event(version=2**64)).encode(), "version"),
        ]
        for name, raw, reason in cases:
            status, answer = await post(daemon, raw=raw)
            assert status == 400, (name, answer)
            assert answer["success"] is False and reason in answer["error"], (name, answer)

        big = json.dumps(order_event(complaint="x" * 100_000)).encode()
        status, answer = await post(daemon, raw=big)
        assert status == 413 and "65536" in answer["error"]

        status, answer = await post(
            daemon, {"apiVersion": "3", "operation": "INSERT", "table": "customer", "data": {}}
        )
        assert status == 200 and answer == {"success": True, "ignored": answer["ignored"]}
        assert "customer" in answer["ignored"]
        assert await stored(daemon) == (0, 0)
        assert not await sql(database_url, "SELECT 1 FROM rejected_orders")  # a 400 writes nothing

        # Unaffected: a good order right after is stored.
        status, answer = await post(daemon, order_event())
        assert status == 200 and "leadId" in answer
        assert await stored(daemon) == (1, 1)


async def test_names_with_quotes_emoji_and_sql_are_stored_verbatim(database_url: str) -> None:
    name = "Zoë O'Brien \"Bobby\" 🚗 '); DROP TABLE leads; --"
    async with running_daemon(make_config(database_url)) as daemon:
        payload = order_event(generatedCustomerName=name, name=name, complaint=f"{name}\\n")
        status, answer = await post(daemon, payload)
        assert status == 200
        row = await lead_of(database_url, payload["data"]["id"])
        assert row is not None and str(row["id"]) == answer["leadId"]
        assert row["order_data"] == payload["data"]  # jsonb round trip, byte for byte
        text = await sql(
            database_url,
            "SELECT order_data->>'generatedCustomerName' AS n FROM leads WHERE id = $1",
            row["id"],
        )
        assert text[0]["n"] == name


# --------------------------------------------------------------------------- one order, one lead


async def test_webhook_duplicates_and_poll_of_one_order_make_one_lead(database_url: str) -> None:
    """The same order delivered twice by webhook, concurrently, then seen by the poller:
    one lead, the same leadId every time, one timeline row."""
    async with FakeShopmonkey(api_key=API_KEY) as fake, polling_daemon(database_url, fake) as d:
        payload = order_event()
        answers = await asyncio.gather(*(post(d, payload) for _ in range(5)))
        assert {status for status, _ in answers} == {200}
        lead_ids = {a["leadId"] for _, a in answers}
        assert len(lead_ids) == 1
        lead_id = lead_ids.pop()

        fake.add_order(copy.deepcopy(payload["data"]))
        counts = await poll.run_once(runtime(d))
        assert counts is not None and counts["fetched"] == 1
        assert counts["duplicate"] == 1 and counts["created"] == 0

        assert await stored(d) == (1, 1)
        assert await events_of(d, lead_id) == [(None, "new", "order.insert")]
        status, again = await post(d, payload)
        assert status == 200 and again["leadId"] == lead_id


async def test_poll_first_then_webhook_is_still_one_lead(database_url: str) -> None:
    async with FakeShopmonkey(api_key=API_KEY) as fake, polling_daemon(database_url, fake) as d:
        order = fake.add_order(shop_order())
        counts = await poll.run_once(runtime(d))
        assert counts is not None and counts["created"] == 1
        row = await lead_of(database_url, order["id"])
        assert row is not None and row["source"] == "poll"

        status, answer = await post(d, {"operation": "INSERT", "table": "order", "data": order})
        assert status == 200 and answer["leadId"] == str(row["id"])
        assert await stored(d) == (1, 1)


# --------------------------------------------------------------------------- lifecycle


async def test_out_of_order_updates_only_move_forward(database_url: str) -> None:
    """Versions 1..5 arrive scrambled: stale ones are ignored, the state never goes back,
    and every state change is exactly one lead_events row."""
    async with running_daemon(make_config(database_url)) as daemon:
        oid = str(uuid.uuid4())
        appt = ["2026-12-01T15:00:00.000Z"]
        v1 = order_event("INSERT", oid, version=1)
        v2 = order_event("UPDATE", oid, version=2, appointmentDates=appt)
        v3 = order_event("UPDATE", oid, version=3, authorized=True, appointmentDates=appt)
        v4 = order_event("UPDATE", oid, version=4, authorized=True, invoiced=True)
        v5 = order_event("UPDATE", oid, version=5, authorized=True)

        status, first = await post(daemon, v3)  # v3 first: creates the lead, at its state
        assert status == 200
        lead_id = first["leadId"]
        for payload in (v1, v2):  # late: ignored, same lead
            status, answer = await post(daemon, payload)
            assert status == 200 and answer["leadId"] == lead_id
        row = await lead_of(database_url, oid)
        assert row is not None and row["state"] == "appointment_set"
        assert row["order_version"] == 3 and row["order_data"]["authorized"] is True

        for payload in (v4, v2, v5):  # completed, then a stale one, then a newer weaker one
            status, answer = await post(daemon, payload)
            assert status == 200 and answer["leadId"] == lead_id
        row = await lead_of(database_url, oid)
        assert row is not None and row["state"] == "completed" and row["order_version"] == 5
        assert await events_of(daemon, lead_id) == [
            (None, "new", "order.update"),
            ("new", "appointment_set", "order.update"),
            ("appointment_set", "completed", "order.update"),
        ]


async def test_updated_date_orders_deliveries_without_a_version(database_url: str) -> None:
    async with running_daemon(make_config(database_url)) as daemon:
        oid = str(uuid.uuid4())
        t0 = dt.datetime.now(dt.UTC)
        insert = order_event("INSERT", oid, version=None)
        late = order_event("UPDATE", oid, version=None, authorized=True)
        late["data"]["updatedDate"] = iso(t0 - dt.timedelta(minutes=5))
        newer = order_event("UPDATE", oid, version=None, authorized=True)
        newer["data"]["updatedDate"] = iso(t0 + dt.timedelta(minutes=5))

        lead_id = (await post(daemon, insert))[1]["leadId"]
        assert (await post(daemon, late))[1]["leadId"] == lead_id
        row = await lead_of(database_url, oid)
        assert row is not None and row["state"] == "new"
        assert (await post(daemon, newer))[1]["leadId"] == lead_id
        row = await lead_of(database_url, oid)
        assert row is not None and row["state"] == "qualified"
        assert row["order_updated_at"] == parse_time(newer["data"]["updatedDate"])


async def test_delete_loses_the_lead_and_unknown_closed_orders_are_ignored(
    database_url: str,
) -> None:
    async with running_daemon(make_config(database_url)) as daemon:
        oid = str(uuid.uuid4())
        lead_id = (await post(daemon, order_event("INSERT", oid, version=1)))[1]["leadId"]
        # Shopmonkey's DELETE carries the row as it was: same version as stored.
        status, answer = await post(daemon, order_event("DELETE", oid, version=1))
        assert status == 200 and answer["leadId"] == lead_id
        row = await lead_of(database_url, oid)
        assert row is not None and row["state"] == "lost"
        assert await events_of(daemon, lead_id) == [
            (None, "new", "order.insert"),
            ("new", "lost", "order.delete"),
        ]
        touch = await sql(
            database_url,
            "SELECT count(*) AS n FROM touch_points WHERE lead_id = $1 AND state = 'scheduled'",
            row["id"],
        )
        assert touch[0]["n"] == 0

        status, answer = await post(daemon, order_event("UPDATE", paid=True, invoiced=True))
        assert status == 200 and "ignored" in answer and "leadId" not in answer
        assert await stored(daemon) == (1, 2)


async def test_edits_to_old_orders_never_start_a_lead_but_a_late_insert_does(
    database_url: str,
) -> None:
    """An order created weeks ago and edited today (first seen by an UPDATE webhook or the
    poller) is not a new estimate request: texting "thanks for your request" would be spam.
    A late INSERT (Shopmonkey retries for days) is still a real new order."""
    old = iso(dt.datetime.now(dt.UTC) - dt.timedelta(days=30))
    async with (
        FakeShopmonkey(api_key=API_KEY) as fake,
        polling_daemon(database_url, fake) as daemon,
    ):
        status, answer = await post(daemon, order_event("UPDATE", createdDate=old))
        assert status == 200 and "max_order_age" in answer["ignored"]
        fake.add_order(shop_order(createdDate=old))
        counts = await poll.run_once(runtime(daemon))
        assert counts is not None and counts["ignored"] == 1 and counts["created"] == 0
        assert await stored(daemon) == (0, 0)

        status, answer = await post(daemon, order_event("INSERT", createdDate=old))
        assert status == 200 and "leadId" in answer
        assert await stored(daemon) == (1, 1)


# --------------------------------------------------------------------------- poller


async def test_poller_survives_throttling_with_the_real_query_shape(
    database_url: str,
) -> None:
    """429 without Retry-After and a Cloudflare HTML 403 are backed off and retried; the
    query uses the forms the live API honours; the cycle is a job_executions row."""
    async with FakeShopmonkey(api_key=API_KEY) as fake, polling_daemon(database_url, fake) as d:
        for _ in range(3):
            fake.add_order(shop_order())
        fake.add_order({**shop_order(), "updatedDate": "2020-01-01T00:00:00.000Z"})  # too old
        fake.fail_next(1, "429")
        fake.fail_next(1, "html403")
        before = len(fake.requests_to("/order"))

        counts = await poll.run_once(runtime(d))

        assert counts is not None and counts["fetched"] == 3 and counts["created"] == 3
        listed = fake.requests_to("/order")[before:]
        assert len(listed) == 3  # two throttled attempts, then the page
        query = listed[-1].query
        assert set(json.loads(query["where"])["updatedDate"]) == {"gte"}
        assert query["orderby"] == '{"updatedDate":"asc"}' and query["limit"] == "100"
        assert query["skip"] == "0"
        jobs = await sql(database_url, "SELECT * FROM job_executions ORDER BY id")
        assert [j["status"] for j in jobs] == ["ok", "ok"]
        assert jobs[-1]["counts"]["created"] == 3
        assert await stored(d) == (3, 3)


@pytest.mark.parametrize("kind", ["401", "403"])
async def test_rejected_api_key_is_a_clear_error_in_log_and_readyz(
    database_url: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeShopmonkey(api_key=API_KEY) as fake, polling_daemon(database_url, fake) as d:
        if kind == "401":
            fake.api_key = "rotated"
        else:
            fake.fail_next(1, "403")
        with caplog.at_level(logging.ERROR, logger="leadd"):
            counts = await poll.run_once(runtime(d))
        assert counts is not None and counts["fetched"] == 0
        assert any(r.getMessage() == "shopmonkey.auth_failed" for r in caplog.records)
        async with aiohttp.ClientSession() as s, s.get(f"{base_url(d)}/readyz") as r:
            status, body = r.status, await r.json()
        assert status == 503
        assert f"HTTP {kind}" in body["problems"]["shopmonkey"]
        assert "API key" in body["problems"]["shopmonkey"]
        jobs = await sql(database_url, "SELECT status, error FROM job_executions ORDER BY id")
        assert jobs[-1]["status"] == "error" and "ShopmonkeyAuthError" in jobs[-1]["error"]

        fake.api_key = API_KEY  # fixed: the next cycle clears the problem
        assert await poll.run_once(runtime(d)) is not None
        assert "shopmonkey" not in d.provider_problems


async def test_two_daemons_on_one_database_have_one_poller(database_url: str) -> None:
    async with (
        FakeShopmonkey(api_key=API_KEY) as fake,
        polling_daemon(database_url, fake) as first,
        polling_daemon(database_url, fake) as second,
    ):
        jobs_before = await _finished_jobs(database_url)
        fake.add_order(shop_order())
        results = [await poll.run_once(runtime(first)), await poll.run_once(runtime(second))]
        assert sum(r is not None for r in results) == 1
        holder = first if results[0] is not None else second
        leases = await sql(database_url, "SELECT holder FROM leases")
        assert [r["holder"] for r in leases] == [holder.instance_id]
        assert await _finished_jobs(database_url) == jobs_before + 1
        assert await stored(first) == (1, 1)


# --------------------------------------------------------------------------- enrichment


async def test_null_customer_and_404_are_not_errors_and_are_retried(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No customer yet, or one Shopmonkey does not know: the lead keeps what is known
    (`partial`); when the order later links a real customer, enrichment fills in E.164
    phone, e-mail, vehicle and catalog-priced services."""
    caplog.set_level(logging.INFO, logger="leadd")
    async with FakeShopmonkey(api_key=API_KEY) as fake, polling_daemon(database_url, fake) as d:
        customer = fixture("shopmonkey-get-customer.json")["data"]
        fake.add_customer(customer)
        fake.add_vehicle(fixture("shopmonkey-get-vehicle.json")["data"])
        oid, ghost = str(uuid.uuid4()), str(uuid.uuid4())
        for service in fixture("shopmonkey-get-order-services.json")["data"]:
            fake.add_service(oid, {**service, "orderId": oid})

        null_customer = order_event("INSERT", oid, version=1, customerId=None)
        unknown_customer = order_event("INSERT", ghost, version=1, customerId=str(uuid.uuid4()))
        null_id = (await post(d, null_customer))[1]["leadId"]
        ghost_id = (await post(d, unknown_customer))[1]["leadId"]

        async def enriched(order_id: str) -> asyncpg.Record | None:
            row = await lead_of(database_url, order_id)
            return row if row is not None and row["enrichment_status"] != "pending" else None

        row = await wait_for(lambda: enriched(oid))
        assert row["enrichment_status"] == "partial" and row["state"] == "new"
        assert row["phone"] is None and row["email"] is None
        assert row["enrich_after"] > dt.datetime.now(dt.UTC)  # retried later
        assert row["vehicle"]["description"] == "2016 Honda Civic"
        row = await wait_for(lambda: enriched(ghost))
        assert row["enrichment_status"] == "partial" and row["state"] == "new"
        missing = {
            r.fields["lead_id"]: r.fields["missing"]
            for r in caplog.records
            if r.getMessage() == "lead.enriched"
        }
        by_order = {oid: null_id, ghost: ghost_id}
        assert "order has no customer yet" in missing[by_order[oid]]
        assert "customer not found (404)" in missing[by_order[ghost]]
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

        linked = order_event("UPDATE", oid, version=2, customerId=customer["id"])
        status, _ = await post(d, linked)
        assert status == 200
        await enrichment.enrich_due(
            runtime(d)
        )  # or the touch-point loop, whichever claims it first
        row = await wait_for(lambda: _status_is(database_url, oid, "done"), timeout=10)
        assert row["phone"] == JAMIE_PHONE and row["email"] == "jamie.rivera@example.com"
        assert (row["first_name"], row["last_name"]) == ("Jamie", "Rivera")
        assert row["vehicle"]["make"] == "Honda" and row["vehicle"]["year"] == 2016
        assert row["services"] == [{"name": "Brake inspection", "price": 459.0}]
        assert row["last_error"] is None


async def _status_is(url: str, order_id: str, status: str) -> asyncpg.Record | None:
    row = await lead_of(url, order_id)
    return row if row is not None and row["enrichment_status"] == status else None


def embedded_customer(phone: str | None, email: str | None) -> dict[str, Any]:
    return {
        "firstName": "Pat",
        "lastName": "Lee",
        "phoneNumbers": [{"number": phone, "primary": True}] if phone else [],
        "emails": [{"email": email, "primary": True}] if email else [],
    }


# --------------------------------------------------------------------------- dedupe, demo


async def test_second_order_of_the_same_person_attaches_to_the_open_lead(
    database_url: str,
) -> None:
    async with running_daemon(make_config(database_url)) as daemon:
        same_person = embedded_customer("(512) 555-0199", "Pat.Lee@Example.com")
        first = order_event(customer=same_person)
        second = order_event(customer=embedded_customer("+15125550199", None))
        other = order_event(customer=embedded_customer("+15125550142", "other@example.com"))

        first_id = (await post(daemon, first))[1]["leadId"]
        await wait_for(lambda: _status_is_not_pending(database_url, first["data"]["id"]))
        second_id = (await post(daemon, second))[1]["leadId"]
        other_id = (await post(daemon, other))[1]["leadId"]
        assert len({first_id, second_id, other_id}) == 3  # one lead per order

        row = await wait_for(lambda: _attached(database_url, second["data"]["id"]))
        assert str(row["attached_to"]) == first_id and row["phone"] == "+15125550199"
        await wait_for(lambda: _status_is_not_pending(database_url, other["data"]["id"]))
        rows = {
            str(r["id"]): r for r in await sql(database_url, "SELECT id, attached_to FROM leads")
        }
        assert rows[first_id]["attached_to"] is None and rows[other_id]["attached_to"] is None
        assert ("new", "new", "dedupe.attached") in await events_of(daemon, second_id)
        open_touch = await sql(
            database_url,
            "SELECT count(*) AS n FROM touch_points WHERE lead_id = $1 AND state = 'scheduled'",
            uuid.UUID(second_id),
        )
        assert open_touch[0]["n"] == 0  # no second sequence


async def _status_is_not_pending(url: str, order_id: str) -> bool:
    row = await lead_of(url, order_id)
    return row is not None and row["enrichment_status"] != "pending"


async def _attached(url: str, order_id: str) -> asyncpg.Record | None:
    row = await lead_of(url, order_id)
    return row if row is not None and row["attached_to"] is not None else None


async def test_demo_mode_processes_only_test_contacts(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeShopmonkey(api_key=API_KEY) as fake:
        fake.add_customer(fixture("shopmonkey-get-customer.json")["data"])
        async with polling_daemon(database_url, fake, demo_mode=True) as daemon:
            real = order_event(customer=embedded_customer("+15125550123", "jamie@example.com"))
            status, answer = await post(daemon, real)
            assert status == 200 and answer["ignored"].startswith("demo_mode")
            assert await lead_of(database_url, real["data"]["id"]) is None

            by_phone = order_event(customer=embedded_customer("+15555550123", None))
            by_email = order_event(customer=embedded_customer(None, "driver.test@example.com"))
            for payload in (by_phone, by_email):
                status, answer = await post(daemon, payload)
                assert status == 200 and "leadId" in answer

            # No embedded customer: decided once enrichment fetched the (real) customer.
            fetched = order_event()
            lead_id = (await post(daemon, fetched))[1]["leadId"]
            await wait_for(lambda: _state_is(database_url, fetched["data"]["id"], "lost"))
            assert (("new", "lost", "demo_mode.filtered")) in await events_of(daemon, lead_id)

            # The poller applies the same filter.
            polled_real = fake.add_order(
                shop_order(customer=embedded_customer("+15125550123", None))
            )
            counts = await poll.run_once(runtime(daemon))
            assert counts is not None and counts["ignored"] == 1
            assert await lead_of(database_url, polled_real["id"]) is None

            # `leadd send-test-lead` posts a signed demo order that passes the filter.
            leads_before = (await stored(daemon))[0]
            host = urlsplit(base_url(daemon))
            assert await send_test_lead(daemon.config, f"http://{host.netloc}") == 0
            assert "lead created:" in capsys.readouterr().out
            assert (await stored(daemon))[0] == leads_before + 1


async def _state_is(url: str, order_id: str, state: str) -> bool:
    row = await lead_of(url, order_id)
    return row is not None and row["state"] == state


# --------------------------------------------------------------------------- database down


@asynccontextmanager
async def database_unreachable(url: str) -> AsyncIterator[None]:
    """Refuse new connections to the test database and cut the existing ones."""
    name = urlsplit(url).path.lstrip("/")
    admin = urlsplit(url)._replace(path="/postgres").geturl()
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        yield
    finally:
        await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await conn.close()


async def test_database_down_is_503_and_the_poller_catches_up_after(database_url: str) -> None:
    """Never 200 for something not stored: while PostgreSQL refuses us the webhook is a
    503 (Shopmonkey retries); once it is back the poller creates the lead."""
    async with FakeShopmonkey(api_key=API_KEY) as fake, polling_daemon(database_url, fake) as d:
        payload = order_event()
        fake.add_order(copy.deepcopy(payload["data"]))
        async with database_unreachable(database_url):
            status, answer = await post(d, payload)
            assert status == 503 and answer["success"] is False
            assert "retry" in answer["error"]
            async with aiohttp.ClientSession() as s, s.get(f"{base_url(d)}/readyz") as r:
                assert r.status == 503
        assert await lead_of(database_url, payload["data"]["id"]) is None
        await wait_for(lambda: _pings(d))  # the pool has replaced the connections we cut

        counts = await poll.run_once(runtime(d))
        assert counts is not None and counts["created"] == 1
        row = await lead_of(database_url, payload["data"]["id"])
        assert row is not None and row["source"] == "poll"
        status, answer = await post(d, payload)  # Shopmonkey's retry: the same lead
        assert status == 200 and answer["leadId"] == str(row["id"])
        assert await stored(d) == (1, 1)


async def _pings(daemon: Daemon) -> bool:
    assert daemon.db is not None
    try:
        await daemon.db.ping()
    except Exception:
        return False
    return True


# --------------------------------------------------------------------------- replays


def with_headers(payload: Any, **sign: Any) -> tuple[bytes, dict[str, str]]:
    """A body and the headers of one signed delivery of it (to send again as a replay)."""
    body = json.dumps(payload).encode()
    return body, signed(body, **sign)


async def deliveries(url: str) -> int:
    return int((await sql(url, "SELECT count(*) AS n FROM webhook_deliveries"))[0]["n"])


async def test_a_replayed_delivery_answers_duplicate_and_changes_nothing(
    database_url: str,
) -> None:
    """The same signed delivery sent again inside its signature's window (an attacker who
    captured it, or a proxy retrying) is answered `duplicate`: no state change, no write.
    A delivery is remembered only once stored: one refused with a 503 is processed when it
    comes again."""
    async with running_daemon(make_config(database_url)) as daemon:
        oid = str(uuid.uuid4())
        insert = with_headers(order_event("INSERT", oid, version=1))
        appt = order_event("UPDATE", oid, version=2, appointmentDates=["2026-12-01T15:00:00Z"])
        update = with_headers(appt)

        status, first = await post(daemon, raw=insert[0], headers=insert[1])
        assert status == 200 and "duplicate" not in first
        lead_id = first["leadId"]
        status, moved = await post(daemon, raw=update[0], headers=update[1])
        assert status == 200 and "duplicate" not in moved
        row = await lead_of(database_url, oid)
        assert row is not None and row["state"] == "appointment_set"
        # Not updated_at: the daemon's own enrichment of this lead may touch it meanwhile.
        before = (row["order_data"], row["order_version"], row["state"], await stored(daemon))

        for body, headers in (insert, update, update):
            status, answer = await post(daemon, raw=body, headers=headers)
            assert status == 200 and answer == {
                "success": True,
                "leadId": lead_id,
                "duplicate": True,
            }
        row = await lead_of(database_url, oid)
        assert row is not None
        after = (row["order_data"], row["order_version"], row["state"], await stored(daemon))
        assert after == before
        assert await deliveries(database_url) == 2

        # Refused while the database is down: not remembered, so Shopmonkey's retry counts.
        late = with_headers(order_event("INSERT"))
        async with database_unreachable(database_url):
            status, _ = await post(daemon, raw=late[0], headers=late[1])
            assert status == 503
        await wait_for(lambda: _pings(daemon))
        status, answer = await post(daemon, raw=late[0], headers=late[1])
        assert status == 200 and "duplicate" not in answer and "leadId" in answer

        # Forgotten once expired (its signature would no longer pass): the table is pruned.
        await sql(database_url, "UPDATE webhook_deliveries SET expires_at = now() - interval '1s'")
        await poll.prune_deliveries(runtime(daemon))
        assert await deliveries(database_url) == 0


async def test_a_body_without_version_information_never_overwrites_the_order(
    database_url: str,
) -> None:
    """Freshly signed, but with neither meta.version nor updatedDate: nothing says it is
    newer than what is stored, so it is not (the lead and its order data stay)."""
    async with running_daemon(make_config(database_url)) as daemon:
        oid = str(uuid.uuid4())
        lead_id = (await post(daemon, order_event("INSERT", oid, version=3)))[1]["leadId"]
        before = await lead_of(database_url, oid)
        old = order_event("UPDATE", oid, version=None, authorized=True, paid=True)
        del old["data"]["updatedDate"]
        status, answer = await post(daemon, old)
        assert status == 200 and answer["leadId"] == lead_id
        after = await lead_of(database_url, oid)
        assert after is not None and before is not None
        assert after["state"] == "new" and after["order_data"] == before["order_data"]
        assert after["order_version"] == 3


async def test_legacy_signatures_when_enabled_are_remembered_by_body(database_url: str) -> None:
    """With shopmonkey.accept_legacy_signature on, a legacy-signed body (no id, no
    timestamp) is accepted once; the same body again is a duplicate."""
    import hashlib
    import hmac

    cfg = make_config(
        database_url, shopmonkey={"webhook_secrets": [SECRET], "accept_legacy_signature": True}
    )
    async with running_daemon(cfg) as daemon:
        bodies = [json.dumps(order_event()).encode() for _ in range(2)]
        answers = []
        for body in (bodies[0], bodies[0], bodies[1]):
            digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            status, answer = await post(
                daemon, raw=body, headers={"X-Shopmonkey-Signature": "sha256=" + digest}
            )
            assert status == 200, answer
            answers.append(answer)
        assert "duplicate" not in answers[0] and answers[1]["duplicate"] is True
        assert answers[1]["leadId"] == answers[0]["leadId"] != answers[2]["leadId"]
        assert await stored(daemon) == (2, 2)


# --------------------------------------------------------------------------- bad polled orders


async def cursor(url: str) -> dt.datetime:
    return (await sql(url, "SELECT position FROM cursors"))[0]["position"]  # type: ignore[no-any-return]


async def rejected(url: str) -> dict[str, asyncpg.Record]:
    rows = await sql(url, "SELECT * FROM rejected_orders ORDER BY first_seen")
    return {r["order_ref"]: r for r in rows}


def rejections(source: str, reason: str) -> float:
    from leadd import metrics

    value = metrics.REGISTRY.get_sample_value(
        "leadd_orders_rejected_total", {"source": source, "reason": reason}
    )
    return value or 0.0


async def test_polled_orders_the_webhook_would_refuse_are_skipped_and_the_cursor_moves(
    database_url: str,
) -> None:
    """A polled order with a NUL, a lone surrogate or a number for an id, between good
    ones: the good ones become leads, the bad ones are recorded (row, metric once, job
    counts) and skipped, and the cursor moves past them all, so the next cycle does not
    stall on them."""
    async with FakeShopmonkey(api_key=API_KEY) as fake, polling_daemon(database_url, fake) as d:
        base = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)

        def at(seconds: int, **changes: Any) -> dict[str, Any]:
            stamp = iso(base + dt.timedelta(seconds=seconds))
            return fake.add_order(shop_order(updatedDate=stamp, createdDate=stamp, **changes))

        good = [at(1), at(3)]
        nul = at(2, complaint="brakes\x00squeal")
        surrogate = at(4, complaint="\ud83d")
        numeric = at(5)
        fake.orders[numeric["id"]]["id"] = 4242  # the fake keys by the old id; the row has 4242
        invalid_before = rejections("poll", "invalid")

        counts = await poll.run_once(runtime(d))
        assert counts is not None
        assert (counts["fetched"], counts["created"], counts["invalid"]) == (5, 2, 3)
        assert await cursor(database_url) == parse_time(numeric["updatedDate"])
        for order in good:
            assert await lead_of(database_url, order["id"]) is not None
        bad = await rejected(database_url)
        assert set(bad) == {nul["id"], surrogate["id"], "4242"}
        assert "NUL" in bad[nul["id"]]["reason"] and bad[nul["id"]]["source"] == "poll"
        assert rejections("poll", "invalid") - invalid_before == 3
        jobs = await sql(database_url, "SELECT status, counts FROM job_executions ORDER BY id")
        assert jobs[-1]["status"] == "ok" and jobs[-1]["counts"]["invalid"] == 3

        # The overlap fetches them again: seen twice, counted once; a new order still comes in.
        later = at(6)
        counts = await poll.run_once(runtime(d))
        assert counts is not None and counts["created"] == 1 and counts["invalid"] == 3
        assert await lead_of(database_url, later["id"]) is not None
        assert {r["seen"] for r in (await rejected(database_url)).values()} == {2}
        assert rejections("poll", "invalid") - invalid_before == 3
        assert all(t.restarts == 0 for t in d.supervisor.tasks.values())


async def test_an_order_the_database_refuses_is_contained_on_both_paths(
    database_url: str,
) -> None:
    """PostgreSQL refusing one order (here a constraint; in life a value it cannot store)
    is that order's failure: the poller records and skips it and the cursor moves on; the
    webhook answers 422 (retrying cannot help) and records it. The orders around it, and
    every later one, are stored."""
    poison = f"poison-{uuid.uuid4().hex[:8]}"
    await sql(
        database_url,
        f"ALTER TABLE leads ADD CONSTRAINT refuse_poison CHECK (shopmonkey_order_id <> '{poison}')",
    )
    async with FakeShopmonkey(api_key=API_KEY) as fake, polling_daemon(database_url, fake) as d:
        base = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
        stamps = [iso(base + dt.timedelta(seconds=s)) for s in (1, 2, 3)]
        first = fake.add_order(shop_order(updatedDate=stamps[0]))
        fake.add_order(shop_order(id=poison, updatedDate=stamps[1]))
        last = fake.add_order(shop_order(updatedDate=stamps[2]))

        counts = await poll.run_once(runtime(d))
        assert counts is not None and (counts["created"], counts["failed"]) == (2, 1)
        assert await cursor(database_url) == parse_time(stamps[2])
        for order in (first, last):
            assert await lead_of(database_url, order["id"]) is not None
        row = (await rejected(database_url))[poison]
        assert row["source"] == "poll" and "CheckViolationError" in row["reason"]

        status, answer = await post(d, order_event("INSERT", poison))
        assert status == 422 and "CheckViolationError" in answer["error"]
        status, answer = await post(d, order_event())
        assert status == 200 and "leadId" in answer
        sources = await sql(
            database_url, "SELECT source FROM rejected_orders WHERE order_ref = $1", poison
        )
        assert sorted(r["source"] for r in sources) == ["poll", "webhook"]
