"""Case 2: a PostgreSQL server of the test's own (never the machine's shared one) stopped for
a while under webhook load. 503s, never a 200 without storing; the daemon stays up and
/readyz says why; after recovery the poller catches every order of the gap. The scenario and
its assertions: tests/chaos/scenarios.py `postgres_outage` (bench/chaos.py runs it for 30 s)."""

from __future__ import annotations

import pytest

from tests.chaos.scenarios import Chaos, postgres_outage

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]


async def test_postgres_down_under_webhook_load_answers_503_and_the_poller_fills_the_gap(
    chaos: Chaos,
) -> None:
    numbers = await postgres_outage(chaos, outage=6.0)
    print(numbers)
    assert numbers["webhooks_503_while_down"] > 0 and numbers["orders_caught_by_poller"] > 0
    # The loops wait the outage out with backoff; none crashes into a supervisor restart.
    assert numbers["task_restarts"] == 0, numbers["task_restarts"]
