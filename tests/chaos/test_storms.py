"""Case 3: provider storms. Twilio 429/5xx bursts (and "accepted, then 500"), SendGrid 500s,
Shopmonkey HTML 403s and 429s: nothing dropped, nothing duplicated, backoff visible in
/metrics, and the queue drains within the bound the config implies once the provider
recovers. Scenarios and assertions: tests/chaos/scenarios.py."""

from __future__ import annotations

import pytest

from tests.chaos.scenarios import Chaos, shopmonkey_storm, twilio_and_sendgrid_storm

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]


async def test_twilio_and_sendgrid_storms_drop_and_duplicate_nothing(
    chaos: Chaos, database_url: str
) -> None:
    numbers = await twilio_and_sendgrid_storm(chaos, database_url, leads=60, storm=4.0)
    print(numbers)
    assert numbers["drain_after_recovery_s"] <= numbers["drain_bound_s"]


async def test_shopmonkey_html_403_and_429_storm_drops_and_duplicates_nothing(
    chaos: Chaos, database_url: str
) -> None:
    numbers = await shopmonkey_storm(chaos, database_url, leads=40, storm=6.0)
    print(numbers)
    assert numbers["drain_after_recovery_s"] <= numbers["drain_bound_s"]
