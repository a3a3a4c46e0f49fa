"""Fixtures of the chaos suite: every test gets a `chaos` world whose daemons are stopped at
the end and whose every log line and HTTP response body is then scanned for personal data
and secrets (case 7 of issue 7). A leak fails the test at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.chaos.pii import PiiScanner
from tests.chaos.scenarios import Chaos, chaos_world


@pytest.fixture
def scanner() -> PiiScanner:
    return PiiScanner()


@pytest.fixture
async def chaos(scanner: PiiScanner) -> AsyncIterator[Chaos]:
    async with chaos_world(scanner) as world:
        yield world
    scanner.assert_clean()
