"""One bad order stays one bad lead: the real daemon, PostgreSQL, fake Twilio and Shopmonkey.

A signed order (or what the Shopmonkey API says about its customer, vehicle and services) may
carry anything JSON can: numbers and lists where names belong, prices of 10^400, NULs, lone
surrogates, megabyte strings. Every one of them must be coerced at the boundary or fail only
its own lead, visibly (on the lead, in a metric, in the log), while the leads around it are
answered and the shared loops never crash. /readyz must never echo a customer's data.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import asyncpg

from leadd import metrics
from leadd.daemon import Daemon
from leadd.intake import enrichment
from tests.e2e.outreach_support import outreach_config, post_order, sms_only, sql
from tests.fakes.shopmonkey import FakeShopmonkey
from tests.fakes.twilio import FakeTwilio
from tests.helpers import base_url, running_daemon, wait_for

API_KEY = "sm-test-key"
# Every value below that reaches the customer or /readyz would be a leak; none may.
POISON_NAME = "Poisonivy"
TEMPLATE = (
    'Hi {{ customer.first_name | default("there") }}, about your '
    '{{ vehicle.description | default("car") }}: {{ services.list | default("estimate") }}'
)


def phone(n: int) -> str:
    return f"+1312555{n:04d}"


def order(n: int, **customer: Any) -> dict[str, Any]:
    """A signed-order body whose embedded customer has phone(n) plus `customer` fields."""
    person: dict[str, Any] = {
        "firstName": "Jamie",
        "lastName": "Rivera",
        "phoneNumbers": [{"number": phone(n), "primary": True}],
    }
    person.update(customer)
    return {
        "operation": "INSERT",
        "table": "order",
        "data": {
            "id": str(uuid.uuid4()),
            "number": 1000 + n,
            "locationId": "loc-sm-1",
            "meta": {"version": 1},
            "generatedVehicleName": "2016 Honda Civic",
            "customer": person,
            "vehicle": {"year": 2016, "make": "Honda", "model": "Civic"},
            "services": [{"name": "Oil change", "totalCents": 9999}],
        },
    }


@asynccontextmanager
async def daemon_with(
    database_url: str, twilio: FakeTwilio, fake: FakeShopmonkey | None = None, **overrides: Any
) -> AsyncIterator[Daemon]:
    shopmonkey: dict[str, Any] = {"webhook_secrets": ["test-secret"], "api_key": ""}
    if fake is not None:
        shopmonkey.update(api_key=API_KEY, base_url=fake.url, poll_interval="1h")
        shopmonkey["requests_per_second"] = 1000
    cfg = outreach_config(
        database_url,
        twilio,
        sequences=sms_only(
            {
                "name": "ack",
                "channel": "sms",
                "delay": "0s",
                "after": "created",
                "template": TEMPLATE,
            }
        ),
        shopmonkey=shopmonkey,
        **overrides,
    )
    async with running_daemon(cfg) as daemon:
        yield daemon


async def readyz(http: aiohttp.ClientSession, daemon: Daemon) -> tuple[int, str]:
    async with http.get(f"{base_url(daemon)}/readyz") as r:
        return r.status, await r.text()


def restarts(task: str) -> float:
    value = metrics.REGISTRY.get_sample_value("leadd_task_restarts_total", {"task": task})
    return value or 0.0


def enrichment_failures(reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value("leadd_enrichment_failures_total", {"reason": reason})
    return value or 0.0


async def lead(url: str, lead_id: str) -> asyncpg.Record:
    rows = await sql(url, "SELECT * FROM leads WHERE id = $1", uuid.UUID(lead_id))
    return rows[0]


def texted(twilio: FakeTwilio, number: str) -> list[str]:
    return [m["body"] for m in twilio.messages if m["to"] == number]


# --------------------------------------------------------------------------- defect 2


async def test_hostile_values_are_coerced_and_every_lead_is_answered(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """Numbers, lists and objects where names belong, a price of 10^400, a 5,000-digit
    model year, a 100 kB name, and (from the Shopmonkey API) NULs and lone surrogates: each
    lead is enriched with what is usable and texted; the orders around them are texted as
    usual; the touch-point task never restarts and /readyz stays 200 without their values."""
    before = restarts("touchpoints")
    async with FakeShopmonkey(api_key=API_KEY) as fake:
        api_customer = fake.add_customer(
            {
                "id": str(uuid.uuid4()),
                "firstName": "Ja\x00mie",
                "lastName": "\ud800Rivera",
                "phoneNumbers": [{"number": phone(7), "primary": True}],
                "emails": [{"email": "ja\x00mie@example.com", "primary": True}],
            }
        )
        api_vehicle = fake.add_vehicle(
            {"id": str(uuid.uuid4()), "year": 10**400, "make": "Hon\x00da", "model": None}
        )
        from_api = order(7)
        del from_api["data"]["customer"], from_api["data"]["vehicle"]
        from_api["data"].update(customerId=api_customer["id"], vehicleId=api_vehicle["id"])
        fake.add_service(from_api["data"]["id"], {"name": "Brakes\x00", "totalCents": float("inf")})
        del from_api["data"]["services"]

        hostile = [
            order(1, firstName=42),
            order(2, firstName=["Jamie", "Rivera"], lastName={"nested": True}),
            order(3),
            order(4),
            order(5, firstName="x" * 100_000),
            from_api,
        ]
        hostile[2]["data"]["services"] = [{"name": "Brakes", "totalCents": 10**400}]
        hostile[3]["data"]["vehicle"] = {"year": "9" * 5000, "make": 7, "model": ["x"]}
        hostile[3]["data"]["generatedVehicleName"] = [1, {"a": 2}]
        good = [order(10), order(11)]

        async with daemon_with(database_url, twilio, fake) as daemon:
            ids = [await post_order(http, base_url(daemon), p) for p in good[:1] + hostile]
            ids.append(await post_order(http, base_url(daemon), good[1]))

            numbers = [phone(n) for n in (10, 1, 2, 3, 4, 5, 7, 11)]
            await wait_for(lambda: all(texted(twilio, n) for n in numbers), timeout=15)

            for n in (10, 11):
                assert texted(twilio, phone(n)) == [
                    "Hi Jamie, about your 2016 Honda Civic: Oil change ($49.99)"
                ]
            assert texted(twilio, phone(1)) == [
                "Hi there, about your 2016 Honda Civic: Oil change ($49.99)"
            ]
            assert texted(twilio, phone(2))[0].startswith("Hi there,")
            assert texted(twilio, phone(3)) == ["Hi Jamie, about your 2016 Honda Civic: Brakes"]
            assert texted(twilio, phone(4)) == ["Hi Jamie, about your car: Oil change ($49.99)"]
            assert texted(twilio, phone(7)) == ["Hi Jamie, about your Honda: Brakes"]
            (long_body,) = texted(twilio, phone(5))
            assert len(long_body) < 400  # a bounded name, not 100 kB in an SMS

            rows = {i: await lead(database_url, i) for i in ids}
            assert {r["enrichment_status"] for r in rows.values()} == {"done"}
            api_row = rows[ids[6]]
            assert (api_row["first_name"], api_row["last_name"]) == ("Jamie", "Rivera")
            assert api_row["email"] is None  # not a usable address: dropped, not repaired

            assert restarts("touchpoints") == before
            assert all(t.restarts == 0 for t in daemon.supervisor.tasks.values())
            status, body = await readyz(http, daemon)
            assert status == 200, body


async def test_an_order_postgresql_refuses_fails_only_its_own_lead(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """Whatever slips past the boundary and makes the save fail (here PostgreSQL refusing one
    customer's name) is that lead's failure: retried with backoff up to a limit, then the lead
    is `failed` with a reason that carries no customer data, counted in a metric, shown on its
    timeline; its touch points are cancelled, not sent blind. The leads before and after it
    are texted at once, the touch-point task never restarts, and /readyz stays 200 without
    the customer's name."""
    await sql(
        database_url,
        f"ALTER TABLE leads ADD CONSTRAINT refuse_poison CHECK (first_name <> '{POISON_NAME}')",
    )
    before = restarts("touchpoints")
    failures_before = enrichment_failures("database")
    overrides = {
        "leads": {"enrichment_retry": "50ms"},
        "touchpoints": {"interval": "100ms", "retry_base": "100ms", "lease": "30s"},
    }
    async with daemon_with(database_url, twilio, **overrides) as daemon:
        first = await post_order(http, base_url(daemon), order(20))
        bad = await post_order(http, base_url(daemon), order(21, firstName=POISON_NAME))
        last = await post_order(http, base_url(daemon), order(22))

        async def failed() -> asyncpg.Record | None:
            row = await lead(database_url, bad)
            return row if row["enrichment_status"] == "failed" else None

        row = await wait_for(failed, timeout=20)
        assert texted(twilio, phone(20)) and texted(twilio, phone(22))
        assert not texted(twilio, phone(21))
        assert row["last_error"].startswith("enrichment failed")
        assert "CheckViolation" in row["last_error"] and POISON_NAME not in row["last_error"]
        assert row["enrichment_failures"] == enrichment.FAILURE_LIMIT
        assert enrichment_failures("database") - failures_before == enrichment.FAILURE_LIMIT
        events = await sql(
            database_url, "SELECT cause FROM lead_events WHERE lead_id = $1", uuid.UUID(bad)
        )
        assert "enrichment.failed" in [e["cause"] for e in events]
        states = await sql(
            database_url, "SELECT state FROM touch_points WHERE lead_id = $1", uuid.UUID(bad)
        )
        assert [s["state"] for s in states] == ["cancelled"]
        for good in (first, last):
            assert (await lead(database_url, good))["enrichment_status"] == "done"

        assert restarts("touchpoints") == before
        assert all(t.restarts == 0 for t in daemon.supervisor.tasks.values())
        status, body = await readyz(http, daemon)
        assert status == 200 and POISON_NAME not in body


# --------------------------------------------------------------------------- defect 3


async def test_readyz_names_a_crash_without_the_data_that_caused_it(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession, monkeypatch: Any
) -> None:
    """A task that crashes on something carrying customer data is shown on /readyz by its
    exception type and a fixed description; the values only go to the (masked) log."""

    async def crash(*args: Any, **kwargs: Any) -> int:
        raise ValueError(f"invalid input for query argument $3: '{POISON_NAME}' jamie@x.example")

    monkeypatch.setattr(enrichment, "claim", crash)
    async with daemon_with(database_url, twilio) as daemon:

        async def not_ready() -> str | None:
            status, body = await readyz(http, daemon)
            return body if status == 503 else None

        body = await wait_for(not_ready, interval=0.02)
        problem = json.loads(body)["problems"]["task:enrichment"]
        assert "ValueError" in problem
        assert POISON_NAME not in body and "jamie" not in body and "$3" not in body
