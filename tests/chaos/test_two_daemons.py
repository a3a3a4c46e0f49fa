"""Case 4: two daemons, one database. Zero duplicate sends, one poller at a time, and when
the poll leader is killed the survivor takes over (the poller within one lease period, the
dead daemon's in-flight sends within one touch-point lease). Scenario and assertions:
tests/chaos/scenarios.py `two_daemons` (bench/chaos.py: 1,000 leads, the real lease wait)."""

from __future__ import annotations

import pytest

from tests.chaos.scenarios import Chaos, two_daemons

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]


async def test_two_daemons_one_database_never_send_twice_and_take_over(
    chaos: Chaos, database_url: str
) -> None:
    numbers = await two_daemons(chaos, database_url, leads=300)
    print(numbers)
    assert numbers["duplicates"] == 0 and numbers["overlapping_poll_cycles"] == 0
