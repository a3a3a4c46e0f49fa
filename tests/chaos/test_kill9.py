"""Case 1: SIGKILL during a burst of 500 signed webhooks while acknowledgements are in flight;
restart. Every order answered 200 is stored; every phone gets its acknowledgement exactly
once (counted at the fake Twilio; sends left in doubt are resolved from Twilio's message
list). The scenario and its assertions: tests/chaos/scenarios.py `kill9_burst`."""

from __future__ import annotations

import pytest

from tests.chaos.scenarios import Chaos, kill9_burst

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]


async def test_kill_9_during_a_burst_of_500_leads_loses_and_duplicates_nothing(
    chaos: Chaos, database_url: str
) -> None:
    numbers = await kill9_burst(chaos, database_url, leads=500)
    print(numbers)
    assert numbers["sms_total"] == 500 and numbers["duplicates"] == 0
