"""The ops API end to end: the real daemon (in-process) on a real database, fake Twilio.

Auth and roles, bad input (400 naming the parameter, 404 for ids that name no lead of this
tenant), state changes with the token's name as actor, pause/resume, staff SMS (sent at once
through the opt-out gate, at any hour and past the cap; refused for an opted-out phone), the
OpenAPI document against the app's routes, and 503 when the database fails."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest

from leadd.config import Config
from leadd.daemon import Daemon
from leadd.store import Store
from leadd.web import api, create_app
from tests.conftest import make_config
from tests.e2e.outreach_support import (
    PHONE,
    PinnedClock,
    cycle,
    order_payload,
    outreach_config,
    post_order,
    sql,
)
from tests.fakes.twilio import FakeTwilio
from tests.helpers import base_url, running_daemon, wait_for
from tests.ops.support import OTHER_TENANT, add_lead, add_tenant, opt_out

READ = "read-token-0123456789abcdef"
WRITE = "write-token-0123456789abcdef"
API = {
    "tokens": [
        {"name": "dashboard", "token": READ, "role": "read"},
        {"name": "ops-bot", "token": WRITE, "role": "write"},
    ]
}
CHICAGO = ZoneInfo("America/Chicago")


class Client:
    def __init__(self, http: aiohttp.ClientSession, daemon: Daemon) -> None:
        self.http, self.base = http, base_url(daemon) + "/api/v1"

    async def __call__(
        self,
        method: str,
        path: str,
        *,
        token: str | None = WRITE,
        json: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        async with self.http.request(
            method, self.base + path, json=json, data=data, headers=h
        ) as r:
            assert r.content_type == "application/json", await r.text()
            return r.status, await r.json()


@pytest.fixture
async def seed(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    await add_tenant(conn)
    yield conn
    await conn.close()


def api_config(database_url: str, **overrides: Any) -> Config:
    return make_config(database_url, api=API, **overrides)


# --------------------------------------------------------------------------- on/off, auth


async def test_without_tokens_the_api_is_off(
    database_url: str, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running_daemon(make_config(database_url)) as daemon:
        call = Client(http, daemon)
        for method, path in [("GET", "/leads"), ("GET", "/openapi.json"), ("GET", "/report"),
                             ("POST", f"/leads/{uuid.uuid4()}/state")]:  # fmt: skip
            status, body = await call(method, path)
            assert status == 404 and body["success"] is False
    assert any(r.getMessage() == "api.off" for r in caplog.records)


async def test_auth_and_roles(
    database_url: str,
    http: aiohttp.ClientSession,
    seed: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """401 without a valid bearer token, the same body whether the lead exists or not;
    403 for a read token on every write route; a read token reads; no token is ever logged."""
    caplog.set_level(logging.DEBUG)
    lead = await add_lead(seed, phone=None)
    async with running_daemon(api_config(database_url)) as daemon:
        call = Client(http, daemon)
        unauthorized = []
        for route in api.ROUTES:
            for lead_id in (lead, uuid.uuid4()):
                path = route.path.removeprefix("/api/v1").format(
                    id=lead_id, channel="email", address="a@example.com"
                )
                for token in (None, "", WRITE[:-1], WRITE + "x", READ.upper()):
                    unauthorized.append(await call(route.method, path, token=token))
                unauthorized.append(
                    await call(
                        route.method, path, token=None, headers={"Authorization": f"Basic {WRITE}"}
                    )  # fmt: skip
                )
                status, body = await call(route.method, path, token=READ, json={})
                if route.role == "write":
                    assert status == 403, (route.path, body)
                    assert "needs write" in body["error"]
                else:
                    assert status not in (401, 403), (route.path, body)
        assert {(s, b["error"]) for s, b in unauthorized} == {
            (401, "missing or invalid bearer token")
        }
        status, body = await call("GET", "/leads", token=READ)
        assert status == 200 and [x["id"] for x in body["leads"]] == [str(lead)]
        # Nothing a refused request carried was applied.
        assert await seed.fetchval("SELECT state FROM leads WHERE id = $1", lead) == "new"
        assert await seed.fetchval("SELECT count(*) FROM touch_points") == 0
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert "api.on" in logged
    assert READ[:12] not in logged and WRITE[:12] not in logged


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("state=booked", "state"),
        ("state=new&state=lost", "state"),
        ("location=uptown", "location"),
        ("since=yesterday", "since"),
        ("until=2026-13-01", "until"),
        ("since=2026-03-02&until=2026-03-01", "until"),
        ("cursor=abc", "cursor"),
        ("cursor=c1.bm90LWpzb24", "cursor"),
        ("cursor=c1.WyJ4IiwieSJd", "cursor"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("q=", "q"),
        ("q=%00", "q"),
        ("q=" + "x" * 101, "q"),
        ("sort=name", "sort"),
    ],
)
async def test_bad_list_parameters_are_400_naming_the_parameter(
    database_url: str, http: aiohttp.ClientSession, query: str, parameter: str
) -> None:
    async with running_daemon(api_config(database_url)) as daemon:
        status, body = await Client(http, daemon)("GET", f"/leads?{query}", token=READ)
    assert status == 400 and body["parameter"] == parameter, body
    assert body["error"].startswith(f"{parameter}: ")


async def test_hostile_text_is_a_400_and_stores_nothing(
    database_url: str, http: aiohttp.ClientSession, seed: asyncpg.Connection
) -> None:
    """What JSON and URLs allow but PostgreSQL cannot store (NUL, lone surrogates) is refused
    as bad input before it reaches the database (where it would be a 5xx)."""
    lead = await add_lead(seed)
    async with running_daemon(api_config(database_url)) as daemon:
        call = Client(http, daemon)
        for path, raw, parameter in [
            (f"/leads/{lead}/messages", rb'{"channel": "sms", "body": "hi\u0000"}', "body"),
            (f"/leads/{lead}/messages", rb'{"channel": "sms", "body": "\ud800"}', "body"),
            (f"/leads/{lead}/state", rb'{"state": "lost", "reason": "\udfff x"}', "reason"),
            (f"/leads/{lead}/state", b'{"state": "lost", "reason": NaN}', "body"),
            (f"/leads/{lead}/state", b"[]", "body"),
        ]:
            status, body = await call("POST", path, data=raw)
            assert status == 400 and body["parameter"] == parameter, (raw, body)
        status, body = await call("DELETE", "/opt-outs/email/a%00b@example.com")
        assert status == 400 and body["parameter"] == "address"
        for cursor in ("c1.WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwic21zIiwiXHUwMDAwIl0",):
            status, body = await call("GET", f"/opt-outs?cursor={cursor}", token=READ)
            assert status == 400 and body["parameter"] == "cursor"
    assert await seed.fetchval("SELECT count(*) FROM touch_points") == 0
    assert await seed.fetchval("SELECT state FROM leads WHERE id = $1", lead) == "new"


async def test_list_filters_and_pages_over_http(
    database_url: str, http: aiohttp.ClientSession, seed: asyncpg.Connection
) -> None:
    now = dt.datetime.now(dt.UTC)
    a = await add_lead(seed, created_at=now - dt.timedelta(hours=3), email="jamie@example.com")
    b = await add_lead(seed, created_at=now - dt.timedelta(hours=2), first_name="Pat",
                       phone="+15125550199", state="engaged")  # fmt: skip
    c = await add_lead(seed, created_at=now - dt.timedelta(hours=1), first_name="Sam", phone=None)
    async with running_daemon(api_config(database_url)) as daemon:
        call = Client(http, daemon)

        async def ids(query: str) -> list[str]:
            status, body = await call("GET", f"/leads?{query}", token=READ)
            assert status == 200, body
            return [x["id"] for x in body["leads"]]

        assert await ids("") == [str(c), str(b), str(a)]
        assert await ids("state=engaged") == [str(b)]
        assert await ids("location=downtown&q=JAMIE@Example.com") == [str(a)]
        assert await ids("q=%28512%29%20555-0199") == [str(b)]  # (512) 555-0199
        assert await ids(f"since={(now - dt.timedelta(hours=2)).isoformat()}".replace("+", "%2B")) == [
            str(c), str(b)
        ]  # fmt: skip
        status, first = await call("GET", "/leads?limit=2", token=READ)
        assert first["next_cursor"] and len(first["leads"]) == 2
        status, rest = await call(
            "GET", f"/leads?limit=2&cursor={first['next_cursor']}", token=READ
        )
        assert [x["id"] for x in rest["leads"]] == [str(a)] and rest["next_cursor"] is None


# --------------------------------------------------------------------------- one lead


async def test_lead_ids_of_other_tenants_or_malformed_are_404(
    database_url: str, http: aiohttp.ClientSession, seed: asyncpg.Connection
) -> None:
    await add_tenant(seed, OTHER_TENANT)
    theirs = await add_lead(seed, tenant=OTHER_TENANT)
    async with running_daemon(api_config(database_url)) as daemon:
        call = Client(http, daemon)
        for lead_id in (str(theirs), "not-a-uuid", "1%20OR%201=1", str(uuid.uuid4())):
            for method, suffix, body in [
                ("GET", "", None),
                ("POST", "/state", {"state": "lost", "reason": "x"}),
                ("POST", "/pause", None),
                ("POST", "/resume", None),
                ("POST", "/messages", {"channel": "sms", "body": "hi"}),
            ]:
                status, answer = await call(method, f"/leads/{lead_id}{suffix}", json=body)
                assert (status, answer["error"]) == (404, "lead not found"), (lead_id, suffix)
    assert await seed.fetchval("SELECT state FROM leads WHERE id = $1", theirs) == "new"


async def test_state_change_names_the_token_and_forbidden_moves_are_409(
    database_url: str, http: aiohttp.ClientSession, seed: asyncpg.Connection
) -> None:
    lead = await add_lead(seed, path=("contacted",))
    async with running_daemon(api_config(database_url)) as daemon:
        call = Client(http, daemon)
        status, body = await call(
            "POST", f"/leads/{lead}/state", json={"state": "appointment_set", "reason": "Tue 9am"}
        )
        assert status == 200 and body == {
            "lead_id": str(lead), "from_state": "contacted", "state": "appointment_set"
        }  # fmt: skip
        status, body = await call(
            "POST", f"/leads/{lead}/state", json={"state": "qualified", "reason": "oops"}
        )
        assert status == 409 and body["current_state"] == "appointment_set"
        assert "appointment_set" in body["error"]
        for bad, parameter in [
            ({"state": "engaged", "reason": "x"}, "state"),
            ({"state": "lost", "reason": "  "}, "reason"),
            ({"state": "lost"}, "reason"),
            ({"state": "lost", "reason": "x", "force": "yes"}, "force"),
            ({"state": "lost", "reason": 3}, "reason"),
        ]:
            status, body = await call("POST", f"/leads/{lead}/state", json=bad)
            assert status == 400 and body["parameter"] == parameter, (bad, body)
        status, body = await call("POST", f"/leads/{lead}/state", data=b"{not json")
        assert status == 400 and body["parameter"] == "body"

        status, detail = await call("GET", f"/leads/{lead}", token=READ)
    events = [e for e in detail["timeline"] if e["type"] == "event"]
    assert events[-1]["to_state"] == "appointment_set"
    assert events[-1]["actor"] == "ops-bot" and events[-1]["detail"] == {"reason": "Tue 9am"}
    [row] = await sql(database_url, "SELECT actor FROM lead_events WHERE actor IS NOT NULL")
    assert row["actor"] == "ops-bot"


async def test_pause_and_resume_over_http(
    database_url: str, http: aiohttp.ClientSession, seed: asyncpg.Connection
) -> None:
    lead = await add_lead(seed)
    async with running_daemon(api_config(database_url)) as daemon:
        call = Client(http, daemon)
        status, body = await call("POST", f"/leads/{lead}/pause")
        assert status == 200 and body["paused"] is True and body["changed"] is True
        status, listed = await call("GET", "/leads", token=READ)
        assert listed["leads"][0]["paused"] is True
        status, body = await call("POST", f"/leads/{lead}/resume", json={})
        assert status == 200 and body["paused"] is False and body["skipped"] == 0
        status, body = await call("POST", f"/leads/{lead}/resume")
        assert status == 200 and body["changed"] is False
        await seed.execute("UPDATE leads SET state = 'completed' WHERE id = $1", lead)
        status, body = await call("POST", f"/leads/{lead}/pause")
        assert status == 409 and body["current_state"] == "completed"


# --------------------------------------------------------------------------- staff messages


async def test_staff_sms_goes_out_at_once_and_never_to_an_opted_out_phone(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    cfg = outreach_config(database_url, twilio, api=API, touchpoints={"interval": "1h"})
    async with running_daemon(cfg) as daemon:
        call = Client(http, daemon)
        lead = await post_order(http, base_url(daemon), order_payload())
        await wait_for(lambda: len(twilio.messages) == 1)  # the automated acknowledgement
        status, body = await call(
            "POST", f"/leads/{lead}/messages", json={"channel": "sms", "body": "Sure, 3pm works"}
        )
        assert status == 202 and body["status"] == "queued", body
        await wait_for(lambda: len(twilio.messages) == 2)  # woken: not the 1 h interval
        assert twilio.messages[1]["to"] == PHONE and twilio.messages[1]["body"] == "Sure, 3pm works"

        async def transcript() -> list[Any]:
            status, detail = await call("GET", f"/leads/{lead}", token=READ)
            return [e for e in detail["timeline"] if e["type"] == "message"]

        messages = await wait_for(lambda: _two(transcript))
        assert [(m["author"], m["text"]) for m in messages][1] == ("ops-bot", "Sure, 3pm works")
        assert messages[1]["dry_run"] is False

        for bad, parameter in [({"channel": "email", "body": "x"}, "channel"),
                               ({"channel": "sms", "body": ""}, "body"),
                               ({"channel": "sms", "body": "x" * 1601}, "body")]:  # fmt: skip
            status, body = await call("POST", f"/leads/{lead}/messages", json=bad)
            assert status == 400 and body["parameter"] == parameter
        await sql(database_url, "INSERT INTO contact_optouts (tenant_id, channel, address, reason)"
                  " SELECT tenant_id, 'sms', phone, 'keyword' FROM leads")  # fmt: skip
        before = await sql(database_url, "SELECT id FROM touch_points")
        status, body = await call(
            "POST", f"/leads/{lead}/messages", json={"channel": "sms", "body": "Still there?"}
        )
        assert status == 409 and "opted out" in body["error"]
        assert await sql(database_url, "SELECT id FROM touch_points") == before
        status, _ = await call("POST", f"/leads/{lead}/messages", token=READ,
                               json={"channel": "sms", "body": "x"})  # fmt: skip
        assert status == 403
    assert len(twilio.messages) == 2


async def _two(transcript: Any) -> list[Any] | None:
    messages: list[Any] = await transcript()
    return messages if len(messages) == 2 else None


async def test_staff_sms_to_a_lead_without_phone_is_422(
    database_url: str, http: aiohttp.ClientSession, seed: asyncpg.Connection
) -> None:
    lead = await add_lead(seed, phone=None)
    async with running_daemon(api_config(database_url)) as daemon:
        status, body = await Client(http, daemon)(
            "POST", f"/leads/{lead}/messages", json={"channel": "sms", "body": "hi"}
        )
    assert status == 422 and "no phone" in body["error"]


def chicago(hour: int, minute: int = 0) -> dt.datetime:
    day = dt.datetime.now(CHICAGO).date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(hour, minute), CHICAGO).astimezone(dt.UTC)


def chicago_daytime_within_a_day() -> dt.datetime:
    """A moment in Chicago's afternoon (allowed every day, Sunday rules included) less than
    24 h from now: the cap still counts an SMS sent now (a fixed "tomorrow 10:00" did not
    when the suite ran before 10:00)."""
    now = dt.datetime.now(CHICAGO)
    one_pm = now.replace(hour=13, minute=0, second=0, microsecond=0)
    if now < one_pm:
        return one_pm.astimezone(dt.UTC)
    if now.hour < 19:
        return (now + dt.timedelta(minutes=1)).astimezone(dt.UTC)
    return (one_pm + dt.timedelta(days=1)).astimezone(dt.UTC)


FOLLOW_UP = {
    "default": [
        {"name": "ack", "channel": "sms", "delay": "0s", "after": "created", "template": "Hi!"},
        {
            "name": "later",
            "channel": "sms",
            "delay": "2h",
            "after": "created",
            "template": "Still there?",
        },  # fmt: skip
    ]
}


@pytest.mark.parametrize(
    ("clock", "cap"),
    [(chicago(23, 15), 3), (chicago_daytime_within_a_day(), 1)],
    ids=["night", "daily-cap-used-up"],
)
async def test_staff_sms_ignores_quiet_hours_and_cap_but_automated_waits(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession, clock: dt.datetime, cap: int
) -> None:
    """At 23:15 the recipient's time (or with the day's cap used by the acknowledgement), the
    due automated follow-up is deferred while the staff message goes out in the same cycle."""
    cfg = outreach_config(
        database_url, twilio, sequences=FOLLOW_UP, touchpoints={"interval": "1h"},
        compliance={"max_sms_per_day": cap}, api=API,
    )  # fmt: skip
    async with running_daemon(cfg) as daemon:
        lead = uuid.UUID(await post_order(http, base_url(daemon), order_payload()))
        await wait_for(lambda: len(twilio.messages) == 1)
        await wait_for(lambda: _scheduled(database_url))
        await sql(database_url, "UPDATE touch_points SET due_at = now() WHERE state = 'scheduled'")
        assert daemon.runtime is not None
        # Straight through the store (no wake-up): this test's cycle runs on its own clock.
        queued = await daemon.runtime.store.add_staff_message(
            lead, body="Call me back?", author="ops-bot", now=dt.datetime.now(dt.UTC)
        )
        assert queued is not None and queued.refused is None
        counts = await cycle(daemon, clock=PinnedClock(clock))
        assert counts["sent"] == 1 and counts["deferred"] == 1, counts
    assert [m["body"] for m in twilio.messages] == ["Hi!", "Call me back?"]
    states = await sql(database_url, "SELECT kind, state FROM touch_points ORDER BY id")
    assert [(r["kind"], r["state"]) for r in states] == [
        ("sequence", "sent"), ("sequence", "scheduled"), ("staff", "sent")
    ]  # fmt: skip


async def _scheduled(url: str) -> bool:
    return len(await sql(url, "SELECT 1 FROM touch_points WHERE state = 'scheduled'")) == 1


async def test_opt_out_after_queueing_still_stops_the_staff_sms(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """STOP arriving between the API accepting a staff message and the send: the send gate
    cancels it, as for every send."""
    cfg = outreach_config(database_url, twilio, api=API, touchpoints={"interval": "1h"})
    async with running_daemon(cfg) as daemon:
        lead = uuid.UUID(await post_order(http, base_url(daemon), order_payload()))
        await wait_for(lambda: len(twilio.messages) == 1)
        assert daemon.runtime is not None
        queued = await daemon.runtime.store.add_staff_message(
            lead, body="hello?", author="ops-bot", now=dt.datetime.now(dt.UTC)
        )
        assert queued is not None and queued.touch_point_id is not None
        conn = await asyncpg.connect(database_url)
        try:
            await opt_out(conn, "sms", PHONE)
        finally:
            await conn.close()
        counts = await cycle(daemon)
        assert counts["cancelled"] == 1
        [row] = await sql(
            database_url, "SELECT state, last_error FROM touch_points WHERE kind = 'staff'"
        )
        assert (row["state"], row["last_error"]) == ("cancelled", "sms opted out")
    assert len(twilio.messages) == 1


# --------------------------------------------------------------------------- opt-outs


async def test_opt_outs_list_and_only_email_can_be_lifted(
    database_url: str, http: aiohttp.ClientSession, seed: asyncpg.Connection
) -> None:
    await opt_out(seed, "email", "pat@example.com", reason="unsubscribe_link")
    await opt_out(seed, "sms", "+13125550123")
    async with running_daemon(api_config(database_url)) as daemon:
        call = Client(http, daemon)
        status, body = await call("GET", "/opt-outs", token=READ)
        assert status == 200 and {o["channel"] for o in body["opt_outs"]} == {"sms", "email"}
        status, body = await call("GET", "/opt-outs?channel=fax", token=READ)
        assert status == 400 and body["parameter"] == "channel"

        status, body = await call("DELETE", "/opt-outs/sms/%2B13125550123")
        assert status == 403 and "START" in body["error"]
        status, body = await call("DELETE", "/opt-outs/email/pat@example.com", token=READ)
        assert status == 403
        status, body = await call("DELETE", "/opt-outs/email/Pat@Example.com")
        assert status == 200 and body["deleted"]["reason"] == "unsubscribe_link"
        status, body = await call("DELETE", "/opt-outs/email/pat@example.com")
        assert status == 404
    lifts = await seed.fetch("SELECT address, lifted_by FROM contact_optout_lifts")
    assert [tuple(r) for r in lifts] == [("pat@example.com", "ops-bot")]
    assert await seed.fetchval("SELECT count(*) FROM contact_optouts WHERE channel = 'sms'") == 1


# --------------------------------------------------------------------------- report, spec, 503


async def test_report_over_http(
    database_url: str, http: aiohttp.ClientSession, seed: asyncpg.Connection
) -> None:
    await add_lead(seed, created_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    async with running_daemon(api_config(database_url)) as daemon:
        call = Client(http, daemon)
        status, body = await call("GET", "/report", token=READ)
        assert status == 200 and body["total"]["leads"] == 1
        assert body["locations"][0]["location_id"] == "downtown"
        status, body = await call("GET", "/report?since=2026-01-02&until=2026-01-01", token=READ)
        assert status == 400 and body["parameter"] == "since"
        status, body = await call("GET", "/report?location=x", token=READ)
        assert status == 400 and body["parameter"] == "location"


async def test_openapi_names_every_route_and_only_those(
    database_url: str, http: aiohttp.ClientSession
) -> None:
    cfg = api_config(database_url)
    app = create_app(cfg, runtime=lambda: None, readiness=_never_ready)
    served = {
        (route.method, route.resource.canonical.removeprefix("/api/v1"))
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/v1/")
        and route.method != "HEAD"
    }
    async with running_daemon(cfg) as daemon:
        status, doc = await Client(http, daemon)("GET", "/openapi.json", token=None)
    assert status == 200
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert documented == served
    assert len(served) == len(api.ROUTES) + 1
    schemas = doc["components"]["schemas"]
    refs = _refs(doc)
    assert refs and all(ref.removeprefix("#/components/schemas/") in schemas for ref in refs)


async def _never_ready() -> tuple[bool, dict[str, Any]]:
    return False, {}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_database_failure_is_a_503_json(
    database_url: str, http: aiohttp.ClientSession, seed: asyncpg.Connection
) -> None:
    lead = await add_lead(seed)
    async with running_daemon(api_config(database_url)) as daemon:
        assert daemon.runtime is not None
        broken = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
        await broken.close()
        working = daemon.runtime
        daemon.runtime = dataclasses.replace(working, store=Store(broken, working.store.tenant_id))
        try:
            call = Client(http, daemon)
            for method, path in [("GET", "/leads"), ("GET", f"/leads/{lead}"), ("GET", "/report"),
                                 ("POST", f"/leads/{lead}/pause")]:  # fmt: skip
                status, body = await call(method, path)
                assert status == 503 and body["error"] == "database unavailable; retry later"
        finally:
            daemon.runtime = working
        status, _ = await Client(http, daemon)("GET", "/leads")
        assert status == 200
