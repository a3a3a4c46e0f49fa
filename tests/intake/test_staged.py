"""Staged enrichment (issue 11): the acknowledgement needs the customer only, so it goes out
after one Shopmonkey call; a step that shows the vehicle or services waits for them. Runs the
two lanes by hand (enrichment stages, then the send loop) against real PostgreSQL, with the
fake Shopmonkey and dry-run Twilio."""

from __future__ import annotations

import uuid
from typing import Any

from leadd import sequences
from leadd.intake import enrichment
from leadd.intake.events import OrderEvent
from leadd.intake.ingest import ingest
from leadd.loops import enrichment as enrichment_loop
from leadd.loops import poll, touchpoints
from tests.conftest import make_config
from tests.intake.conftest import EnvFactory, order
from tests.intake.test_enrichment import fixture

OTHER_PHONE = "+13125550142"
STEPS = {
    "default": [
        {"name": "ack", "channel": "sms", "delay": "0s", "after": "created",
         "template": "Hi {{ customer.first_name | default('there') }}, we got your request."},
        {"name": "details", "channel": "sms", "delay": "0s", "after": "created",
         "template": "Your {{ vehicle.description }}: {{ services.names }}."},
    ]
}  # fmt: skip


def calls(fake: Any) -> list[str]:
    return [r.path.removeprefix("/v3/").split("/")[0] for r in fake.requests]


async def states(env: Any, lead_id: uuid.UUID) -> list[tuple[str, str]]:
    return [(r["step_name"], r["state"]) for r in await env.touch_points(lead_id)]


async def test_acknowledgement_after_one_call_details_wait_for_vehicle_and_services(
    make_env: EnvFactory,
) -> None:
    env = await make_env(sequences=STEPS)
    customer = env.fake.add_customer(fixture("shopmonkey-get-customer.json"))
    vehicle = env.fake.add_vehicle(fixture("shopmonkey-get-vehicle.json"))
    data = order(customerId=customer["id"], vehicleId=vehicle["id"])
    env.fake.add_service(data["id"], {"name": "Brake inspection", "totalCents": 100})
    created = await ingest(env.rt, OrderEvent("INSERT", data, "webhook"))
    assert created.lead_id is not None
    lead_id = created.lead_id

    [job] = await enrichment.claim(env.rt, 10)
    assert await enrichment.enrich(env.rt, job) == "contact"
    assert calls(env.fake) == ["customer"]  # one call before the acknowledgement
    assert (await env.lead(lead_id))["enrichment_status"] == "contact"
    assert await touchpoints.run_once(env.rt) == {"sent": 1}
    assert await states(env, lead_id) == [("ack", "sent"), ("details", "scheduled")]

    # The details are due at once, as a stage of their own.
    assert await enrichment_loop.run_once(env.rt) == 1
    assert sorted(calls(env.fake)) == ["customer", "order", "vehicle"]
    lead = await env.lead(lead_id)
    assert lead["enrichment_status"] == "done" and lead["vehicle"]["description"]
    assert await touchpoints.run_once(env.rt) == {"sent": 1}
    assert await states(env, lead_id) == [("ack", "sent"), ("details", "sent")]


async def test_customers_are_claimed_before_details(make_env: EnvFactory) -> None:
    """A lead waiting for its customer (no acknowledgement yet) is claimed before another
    lead's details, however long those have been due."""
    env = await make_env(sequences=STEPS)
    first = await ingest(env.rt, OrderEvent("INSERT", order(customerId="c-1"), "webhook"))
    [job] = await enrichment.claim(env.rt, 1)
    assert job.id == first.lead_id
    await enrichment.enrich(env.rt, job)  # the fake knows no c-1: partial, retried later
    env.fake.add_customer({**fixture("shopmonkey-get-customer.json"), "id": "c-2"})
    second = await ingest(env.rt, OrderEvent("INSERT", order(customerId="c-2"), "webhook"))
    [job] = await enrichment.claim(env.rt, 1)
    assert job.id == second.lead_id and await enrichment.enrich(env.rt, job) == "contact"
    env.clock.advance(5)
    third = await ingest(env.rt, OrderEvent("INSERT", order(customerId="c-2"), "webhook"))
    [job] = await enrichment.claim(env.rt, 1)  # second's details have been due longer
    assert job.id == third.lead_id and job.enrichment_status == "pending"


def test_detail_steps_are_the_ones_reading_vehicle_or_services() -> None:
    cfg = make_config(None, sequences=STEPS)
    assert sequences.detail_steps(cfg) == ("default:1",)


async def test_a_polled_lead_is_acknowledged_without_a_customer_call(
    make_env: EnvFactory,
) -> None:
    """The poller's list call embeds the customer and vehicle (include[...]); the lead keeps
    them in its order data, so its first stage needs no call at all (the acknowledgement is
    released at once) and its second fetches only the services."""
    env = await make_env(sequences=STEPS)
    customer = env.fake.add_customer(fixture("shopmonkey-get-customer.json"))
    vehicle = env.fake.add_vehicle(fixture("shopmonkey-get-vehicle.json"))
    data = env.fake.add_order(order(customerId=customer["id"], vehicleId=vehicle["id"]))
    env.fake.add_service(data["id"], {"name": "Brake inspection", "totalCents": 100})
    counts = await poll.run_once(env.rt)
    assert counts is not None and counts["created"] == 1
    [lead] = await env.sql("SELECT * FROM leads")
    assert lead["order_data"]["customer"]["id"] == customer["id"]
    assert lead["order_data"]["vehicle"]["id"] == vehicle["id"]
    env.fake.requests.clear()

    [job] = await enrichment.claim(env.rt, 10)
    assert await enrichment.enrich(env.rt, job) == "contact"
    assert env.fake.requests == []  # no call before the acknowledgement
    assert await touchpoints.run_once(env.rt) == {"sent": 1}
    assert await enrichment_loop.run_once(env.rt) == 1
    assert calls(env.fake) == ["order"]  # the services only: the vehicle came embedded
    lead = await env.lead(lead["id"])
    assert lead["enrichment_status"] == "done" and lead["vehicle"]["description"]


async def test_a_customer_changed_during_the_details_stage_is_looked_up(
    make_env: EnvFactory,
) -> None:
    """An order edited to another customer while its lead has only the first customer's
    contact ('contact'): the new customer is looked up before anything more goes out (the
    lead waits for it as a new one does), instead of the details stage finishing the lead
    with the old customer's phone."""
    env = await make_env(sequences=STEPS)
    base = fixture("shopmonkey-get-customer.json")
    env.fake.add_customer({**base, "id": "c-1"})
    env.fake.add_customer(
        {**base, "id": "c-2", "phoneNumbers": [{"number": OTHER_PHONE, "primary": True}]}
    )
    data = order(customerId="c-1", vehicleId=None)
    created = await ingest(env.rt, OrderEvent("INSERT", data, "webhook"))
    assert created.lead_id is not None
    [job] = await enrichment.claim(env.rt, 10)
    assert await enrichment.enrich(env.rt, job) == "contact"

    edited = {**data, "customerId": "c-2", "meta": {"version": 2}}
    assert (await ingest(env.rt, OrderEvent("UPDATE", edited, "webhook"))).result == "updated"
    lead = await env.lead(created.lead_id)
    assert lead["enrichment_status"] == "pending"  # the steps wait for the new customer
    assert await enrichment_loop.run_once(env.rt) == 2  # its customer, then its details
    lead = await env.lead(created.lead_id)
    assert lead["enrichment_status"] == "done" and lead["phone"] == OTHER_PHONE
