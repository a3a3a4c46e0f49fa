"""Fixtures for the ops tests: a store on a fresh database (no daemon), a raw connection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from leadd.store import Store
from tests.e2e.conftest import http, twilio  # noqa: F401 - the same fake provider fixtures
from tests.ops.support import TENANT, add_tenant


@pytest.fixture
async def conn(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as c:
        await add_tenant(c)
        yield c


@pytest.fixture
def store(pool: asyncpg.Pool, conn: asyncpg.Connection) -> Store:
    return Store(pool, TENANT)
