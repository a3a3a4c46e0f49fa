"""Enrichment against the store on real PostgreSQL and the fake Shopmonkey, with a pinned
clock and no daemon: due-ness by the clock, what is learned and kept, provider problems,
one lead's failure contained to it, dedupe of people and the demo filter."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

from leadd import chatlinks
from leadd.intake import enrichment
from leadd.intake.events import OrderEvent
from leadd.intake.ingest import ingest
from tests.intake.conftest import FIXTURES, T0, Env, EnvFactory, order

JAMIE_PHONE = "+15125550123"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())["data"]
    return data


async def new_lead(env: Env, **changes: Any) -> uuid.UUID:
    """A lead of a new order (the fixture's, whose vehicle the fake does not know unless
    `vehicleId` is given: None means none)."""
    result = await ingest(env.rt, OrderEvent("INSERT", order(**changes), "webhook"))
    assert result.lead_id is not None
    return result.lead_id


def person(phone: str | None, email: str | None = None) -> dict[str, Any]:
    return {
        "firstName": "Pat",
        "lastName": "Lee",
        "phoneNumbers": [{"number": phone, "primary": True}] if phone else [],
        "emails": [{"email": email, "primary": True}] if email else [],
    }


async def test_due_by_the_runtime_clock_and_filled_from_shopmonkey(env: Env) -> None:
    """A new lead is due at its creation by the clock, not before; the customer, vehicle and
    services are fetched and stored bounded (E.164 phone, catalog price); a finished lead is
    not claimed again. Enrichment wakes the send lane (the lead's touch points are released),
    never its own."""
    customer = env.fake.add_customer(fixture("shopmonkey-get-customer.json"))
    vehicle = env.fake.add_vehicle(fixture("shopmonkey-get-vehicle.json"))
    lead_id = await new_lead(env, customerId=customer["id"], vehicleId=vehicle["id"])
    oid = (await env.lead(lead_id))["shopmonkey_order_id"]
    env.fake.add_service(oid, {"name": "Brake inspection", "totalCents": 1})

    env.clock.now = T0 - dt.timedelta(seconds=1)
    assert await enrichment.enrich_due(env.rt) == 0
    env.clock.now = T0
    assert await enrichment.enrich_due(env.rt) == 1
    lead = await env.lead(lead_id)
    assert lead["enrichment_status"] == "done" and lead["enrich_after"] is None
    assert (lead["first_name"], lead["last_name"]) == ("Jamie", "Rivera")
    assert lead["phone"] == JAMIE_PHONE and lead["email"] == "jamie.rivera@example.com"
    assert lead["vehicle"]["description"] == "2016 Honda Civic"
    assert lead["services"] == [{"name": "Brake inspection", "price": 459.0}]
    # The chat session (0010): its link token's hash, expiring chat.link_ttl after the clock.
    sessions = await env.sql("SELECT * FROM chat_sessions WHERE lead_id = $1", lead_id)
    assert len(sessions) == 1
    assert sessions[0]["token_hash"] == chatlinks.session_hash(env.rt.config, lead_id)
    assert sessions[0]["expires_at"] == T0 + dt.timedelta(seconds=env.rt.config.chat.link_ttl)
    env.clock.advance(86400)
    assert await enrichment.enrich_due(env.rt) == 0
    assert env.wakes == []  # never its own lane
    assert env.send_wakes == [T0, T0]  # contact (the acknowledgement), then the details


async def test_a_missing_customer_is_partial_and_retried_on_the_clock(env: Env) -> None:
    """A 404 is not an error: the lead keeps what is known, is released to its touch points
    (`partial`) and is due again `leads.enrichment_retry` later by the clock."""
    lead_id = await new_lead(env, customerId=str(uuid.uuid4()), vehicleId=None)
    assert await enrichment.enrich_due(env.rt) == 1
    lead = await env.lead(lead_id)
    retry = env.rt.config.leads.enrichment_retry
    assert lead["enrichment_status"] == "partial" and lead["phone"] is None
    assert lead["last_error"] == "customer not found (404)"
    assert lead["enrich_after"] == T0 + dt.timedelta(seconds=retry)
    assert lead["vehicle"]["description"] == "2016 Honda Civic"  # generatedVehicleName

    env.clock.advance(retry - 1)
    assert await enrichment.enrich_due(env.rt) == 0
    env.clock.advance(1)
    env.fake.add_customer({**fixture("shopmonkey-get-customer.json"), "id": "late"})
    await env.sql("UPDATE leads SET customer_id = 'late'")
    assert await enrichment.enrich_due(env.rt) == 1
    lead = await env.lead(lead_id)
    assert lead["enrichment_status"] == "done" and lead["phone"] == JAMIE_PHONE


async def test_a_rejected_api_key_defers_the_lead_and_shows_in_health(env: Env) -> None:
    """Shopmonkey refusing the key is Shopmonkey's problem, not the lead's: it stays pending
    (its touch points keep waiting for a phone), the failure budget is untouched, and the
    runtime's provider health says what is wrong without any customer data."""
    customer = env.fake.add_customer(fixture("shopmonkey-get-customer.json"))
    lead_id = await new_lead(env, customerId=customer["id"])
    env.fake.api_key = "rotated"
    assert await enrichment.enrich_due(env.rt) == 1
    lead = await env.lead(lead_id)
    assert lead["enrichment_status"] == "pending" and lead["enrichment_failures"] == 0
    assert "ShopmonkeyAuthError" in lead["last_error"]
    problem = env.rt.health.problems["shopmonkey"]
    assert "HTTP 401" in problem and customer["id"] not in problem


async def test_one_lead_the_database_refuses_fails_alone_after_its_budget(env: Env) -> None:
    """A value PostgreSQL refuses fails only its lead: each attempt is recorded on it and
    retried with backoff by the clock; after FAILURE_LIMIT failures it is `failed` with a
    value-free reason on its timeline, and its touch points are cancelled. The lead beside
    it is enriched every time."""
    await env.sql("ALTER TABLE leads ADD CONSTRAINT refuse CHECK (first_name <> 'Poisonivy')")
    poison = {**person(JAMIE_PHONE), "firstName": "Poisonivy"}
    bad = await new_lead(env, customer=poison, vehicleId=None)
    for attempt in range(1, enrichment.FAILURE_LIMIT + 1):
        good = await new_lead(env, customer=person(f"+1312555{attempt:04d}"), vehicleId=None)
        assert await enrichment.enrich_due(env.rt) == 2
        assert (await env.lead(good))["enrichment_status"] == "done"
        lead = await env.lead(bad)
        assert lead["enrichment_failures"] == attempt
        if attempt < enrichment.FAILURE_LIMIT:
            assert lead["last_error"].startswith("enrichment error (retrying)")
            assert lead["enrich_after"] > env.clock()
            env.clock.now = lead["enrich_after"]
    lead = await env.lead(bad)
    assert lead["enrichment_status"] == "failed"
    assert "CheckViolationError" in lead["last_error"] and "Poisonivy" not in lead["last_error"]
    assert ("new", "new", "enrichment.failed") in await env.events(bad)
    assert {tp["state"] for tp in await env.touch_points(bad)} == {"cancelled"}
    env.clock.advance(10 * 86400)
    assert await enrichment.enrich_due(env.rt) == 0  # given up: never claimed again


async def test_concurrent_claims_are_disjoint(env: Env) -> None:
    ids = {
        await new_lead(env, customer=person(f"+1312555{n:04d}"), vehicleId=None) for n in range(6)
    }
    done = await asyncio.gather(*(enrichment.enrich_due(env.rt, 2) for _ in range(4)))
    assert sorted(done) == [0, 2, 2, 2]
    rows = await env.sql("SELECT id, enrichment_attempts, enrichment_status FROM leads")
    assert {r["id"] for r in rows} == ids
    assert {(r["enrichment_attempts"], r["enrichment_status"]) for r in rows} == {(1, "done")}


async def test_a_second_order_of_the_same_person_attaches_to_the_open_lead(env: Env) -> None:
    first = await new_lead(
        env, customer=person("(512) 555-0199", "Pat.Lee@Example.com"), vehicleId=None
    )
    await enrichment.enrich_due(env.rt)
    second = await new_lead(env, customer=person("+15125550199"), vehicleId=None)
    other = await new_lead(
        env, customer=person("+15125550142", "other@example.com"), vehicleId=None
    )
    await enrichment.enrich_due(env.rt)
    assert (await env.lead(second))["attached_to"] == first
    assert (await env.lead(other))["attached_to"] is None
    assert ("new", "new", "dedupe.attached") in await env.events(second)
    assert {tp["state"] for tp in await env.touch_points(second)} == {"cancelled"}
    assert "cancelled" not in {tp["state"] for tp in await env.touch_points(first)}


async def test_two_leads_of_one_person_never_attach_to_each_other(env: Env) -> None:
    """Dedupe attaches a lead only to an older open lead of the same person. Two leads
    enriched at the same moment (the younger saved before the older had a phone) must not
    attach to each other, which would cancel both sequences and leave the person unanswered."""
    older = await new_lead(env, customerId=None)
    env.clock.advance(1)
    younger = await new_lead(env, customerId=None)
    assert await enrichment.enrich_due(env.rt) == 2  # both partial: no customer yet

    env.clock.advance(env.rt.config.leads.enrichment_retry)
    jobs = {
        job.id: job
        for job in await env.store.claim_enrichment(
            limit=10, lease=60, max_attempts=enrichment.MAX_ATTEMPTS, now=env.clock()
        )
    }
    assert set(jobs) == {older, younger}
    phone = {"phone": JAMIE_PHONE}
    await enrichment.save(env.rt, jobs[younger], phone, error=None, status="done")
    await enrichment.save(env.rt, jobs[older], phone, error=None, status="done")
    attached = {r["id"]: r["attached_to"] for r in await env.sql("SELECT * FROM leads")}
    assert attached == {older: None, younger: None}

    # The next save of the younger one attaches it to the older, never the reverse.
    await enrichment.save(env.rt, jobs[younger], phone, error=None, status="done")
    attached = {r["id"]: r["attached_to"] for r in await env.sql("SELECT * FROM leads")}
    assert attached == {older: None, younger: older}


async def test_demo_mode_loses_a_real_person_found_by_enrichment(make_env: EnvFactory) -> None:
    """An order without embedded contact data passes the webhook's demo filter; once
    enrichment finds a real person the lead is lost in the same transaction as the save,
    its touch points cancelled. A test person goes ahead."""
    env = await make_env(demo_mode=True)
    real = env.fake.add_customer(fixture("shopmonkey-get-customer.json"))
    test_person = env.fake.add_customer({**person("+15555550123"), "id": str(uuid.uuid4())})
    lost = await new_lead(env, customerId=real["id"], vehicleId=None)
    kept = await new_lead(env, customerId=test_person["id"], vehicleId=None)
    assert await enrichment.enrich_due(env.rt) == 2
    lead = await env.lead(lost)
    assert lead["state"] == "lost" and lead["phone"] == JAMIE_PHONE
    assert (await env.events(lost))[-1] == ("new", "lost", "demo_mode.filtered")
    assert {tp["state"] for tp in await env.touch_points(lost)} == {"cancelled"}
    assert (await env.lead(kept))["state"] == "new"
    assert "cancelled" not in {tp["state"] for tp in await env.touch_points(kept)}
