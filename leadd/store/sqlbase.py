"""What the conversation store's parts share: named queries from a `.sql` file, a pool bound to
one tenant, and the helpers that run a query with the tenant as $1 (optionally on the
connection of a unit of work in progress)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import asyncpg

# A pooled connection, or a plain one (what the pool hands out inside `_tx`).
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def load_queries(filename: str) -> dict[str, str]:
    """`-- name: x` headers of leadd/sql/<filename> -> {x: statement}."""
    text = resources.files("leadd.sql").joinpath(filename).read_text(encoding="utf-8")
    parts = _NAME.split(text)
    return {parts[i]: parts[i + 1].strip().rstrip(";") for i in range(1, len(parts), 2)}


class SqlBase:
    """A pool bound to one tenant; every query named in `QUERIES` gets the tenant as $1."""

    QUERIES: dict[str, str] = {}

    def __init__(self, pool: asyncpg.Pool, tenant_id: uuid.UUID) -> None:
        self.pool = pool
        self.tenant_id = tenant_id

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Conn]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    async def _fetch(self, name: str, *args: Any, conn: Conn | None = None) -> list[asyncpg.Record]:
        if conn is not None:
            rows: list[asyncpg.Record] = await conn.fetch(self.QUERIES[name], self.tenant_id, *args)
            return rows
        async with self.pool.acquire() as c:
            return await self._fetch(name, *args, conn=c)

    async def _fetchrow(
        self, name: str, *args: Any, conn: Conn | None = None
    ) -> asyncpg.Record | None:
        if conn is not None:
            row: asyncpg.Record | None = await conn.fetchrow(
                self.QUERIES[name], self.tenant_id, *args
            )
            return row
        async with self.pool.acquire() as c:
            return await self._fetchrow(name, *args, conn=c)

    async def _execute(self, name: str, *args: Any, conn: Conn | None = None) -> str:
        if conn is not None:
            status: str = await conn.execute(self.QUERIES[name], self.tenant_id, *args)
            return status
        async with self.pool.acquire() as c:
            return await self._execute(name, *args, conn=c)
