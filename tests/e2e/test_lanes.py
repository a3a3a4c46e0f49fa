"""Separate lanes (issue 11): enrichment and sending never wait for each other. With the
daemon running, a lead whose Shopmonkey customer lookup hangs does not hold back another
lead's acknowledgement, which goes out while that lookup is still unanswered."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from tests.e2e.outreach_support import post_order, sql
from tests.e2e.test_intake_containment import API_KEY, daemon_with, phone, texted
from tests.fakes.shopmonkey import FakeShopmonkey
from tests.fakes.twilio import FakeTwilio
from tests.helpers import base_url, wait_for


def ids_only(customer_id: str) -> dict[str, Any]:
    """An order webhook as real Shopmonkey sends it: ids only, the customer to be fetched."""
    return {
        "operation": "INSERT",
        "table": "order",
        "data": {
            "id": str(uuid.uuid4()),
            "number": 1042,
            "locationId": "loc-sm-1",
            "customerId": customer_id,
            "meta": {"version": 1},
        },
    }


def customer(n: int) -> dict[str, Any]:
    return {
        "id": f"cust-{n}",
        "firstName": "Jamie",
        "lastName": "Rivera",
        "phoneNumbers": [{"number": phone(n), "primary": True}],
        "emails": [],
    }


async def test_a_hanging_lookup_does_not_hold_back_another_leads_acknowledgement(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    async with FakeShopmonkey(api_key=API_KEY, hang_seconds=60) as fake:
        slow, quick = fake.add_customer(customer(1)), fake.add_customer(customer(2))
        async with daemon_with(database_url, twilio, fake) as daemon:
            await wait_for(lambda: bool(fake.requests_to("/order")))  # the start-up poll
            fake.fail_next(1, kind="timeout")  # the next call hangs: the slow lead's customer
            slow_lead = await post_order(http, base_url(daemon), ids_only(slow["id"]))
            await wait_for(lambda: bool(fake.requests_to(f"/customer/{slow['id']}")))
            await post_order(http, base_url(daemon), ids_only(quick["id"]))
            await wait_for(lambda: bool(texted(twilio, phone(2))))
            # The slow lookup is still unanswered: its lead has no contact and no SMS yet.
            [row] = await sql(
                database_url,
                "SELECT enrichment_status FROM leads WHERE id = $1",
                uuid.UUID(slow_lead),
            )
            assert row["enrichment_status"] == "pending"
            assert texted(twilio, phone(1)) == []
            assert len(fake.requests_to(f"/customer/{slow['id']}")) == 1
