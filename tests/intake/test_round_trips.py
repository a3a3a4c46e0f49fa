"""Round trips to PostgreSQL per lead, webhook to `contacted` (issue 11: about 15 before),
counted by the pool (`leadd_db_statements_total`: every statement, BEGIN and COMMIT included)
so they cannot creep back. One lead through the services the daemon runs: intake, the two
enrichment stages, one send-loop cycle (claim, gate, record)."""

from __future__ import annotations

from leadd import metrics
from leadd.intake import receive_webhook
from leadd.intake.events import OrderEvent
from leadd.loops import enrichment as enrichment_loop
from leadd.loops import touchpoints
from tests.intake.conftest import EnvFactory, order
from tests.intake.test_enrichment import fixture

# What one lead costs today, each one statement without BEGIN/COMMIT: the insert (lead,
# timeline, touch points, delivery memory), enrichment's claim and save for the customer and
# again for the details, the send loop's claim, gate and record. A change that needs more
# says why here.
BUDGET = 8

ACK_ONLY = {
    "default": [
        {"name": "ack", "channel": "sms", "delay": "0s", "after": "created",
         "template": "Hi {{ customer.first_name | default('there') }}, we got your request."},
    ]
}  # fmt: skip


def statements() -> float:
    value = metrics.REGISTRY.get_sample_value("leadd_db_statements_total")
    assert value is not None
    return value


async def test_webhook_to_contacted_within_the_round_trip_budget(make_env: EnvFactory) -> None:
    env = await make_env(sequences=ACK_ONLY)
    customer = env.fake.add_customer(fixture("shopmonkey-get-customer.json"))
    data = order(customerId=customer["id"], vehicleId=None)
    env.fake.add_service(data["id"], {"name": "Brake inspection", "totalCents": 100})

    before = statements()
    result = await receive_webhook(env.rt, OrderEvent("INSERT", data, "webhook"))
    assert result.lead_id is not None
    assert await enrichment_loop.run_once(env.rt) == 2  # the customer, then the details
    assert await touchpoints.run_once(env.rt, full=False) == {"sent": 1}
    used = statements() - before

    assert (await env.lead(result.lead_id))["state"] == "contacted"
    assert used <= BUDGET, f"{used:.0f} round trips from webhook to contacted"
