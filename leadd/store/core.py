"""The store's core: the asyncpg pool, schema migrations, named queries, and `StoreCore`, the
base every store part builds on (tenant bound once, named queries timed per name).

Runtime queries live in `sql/*.sql` (not numbered) under `-- name: <name>` headers, loaded once.
Schema files `sql/NNNN_name.sql` are applied in order, in one transaction under an advisory
lock, and recorded in `schema_migrations`, so two daemons starting together cannot race and a
re-run is a no-op. Every query is scoped to the tenant the store was opened for.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import asyncpg

from leadd import metrics
from leadd.config import Config
from leadd.logs import get_logger

log = get_logger(__name__)

# pg_advisory_xact_lock key for schema changes: any constant unique to leadd.
MIGRATION_LOCK_KEY = 0x1EADD_5C4E
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_MIGRATION = re.compile(r"^(\d{4})_(\w+)\.sql$")


# What a unit of work (`Tx`) runs on: a pooled connection or a plain one.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    out = []
    for entry in resources.files("leadd.sql").iterdir():
        m = _MIGRATION.match(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(out, key=lambda m: m.version)


def load_queries() -> dict[str, str]:
    """Named queries from every non-numbered .sql file (queries.sql, ops.sql, ...)."""
    out: dict[str, str] = {}
    files = sorted(resources.files("leadd.sql").iterdir(), key=lambda e: e.name)
    for entry in files:
        if not entry.name.endswith(".sql") or _MIGRATION.match(entry.name):
            continue
        parts = _NAME.split(entry.read_text(encoding="utf-8"))
        for i in range(1, len(parts), 2):
            if parts[i] in out:
                raise ValueError(f"query {parts[i]!r} is named twice ({entry.name})")
            out[parts[i]] = parts[i + 1].strip().rstrip(";")
    return out


Q = load_queries()


async def migrate(conn: Conn) -> list[int]:
    """Apply pending schema files; return the versions applied (empty when up to date)."""
    migrations = load_migrations()
    applied_now: list[int] = []
    async with conn.transaction():
        # Held until commit: a second daemon waits here, then sees everything applied.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(Q["create_schema_migrations"])
        done = {r["version"]: r["checksum"] for r in await conn.fetch(Q["applied_migrations"])}
        for m in migrations:
            if m.version in done:
                if done[m.version] != m.checksum:
                    raise MigrationError(
                        f"schema file {m.version:04d}_{m.name}.sql changed after it was applied; "
                        "add a new numbered file instead of editing an applied one"
                    )
                continue
            await conn.execute(m.sql)
            await conn.execute(Q["record_migration"], m.version, m.name, m.checksum)
            applied_now.append(m.version)
    if applied_now:
        log.info("schema.applied", versions=applied_now)
    return applied_now


class CountedConnection(asyncpg.Connection):
    """A pool connection that counts the statements it sends (`leadd_db_statements_total`).
    Each call is one round trip to PostgreSQL; a transaction's BEGIN and COMMIT go through
    `execute` too. A test holds the round trips per lead to a budget with it."""

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        metrics.DB_STATEMENTS.inc()
        return await super().execute(*args, **kwargs)

    async def executemany(self, *args: Any, **kwargs: Any) -> Any:
        metrics.DB_STATEMENTS.inc()
        return await super().executemany(*args, **kwargs)

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        metrics.DB_STATEMENTS.inc()
        return await super().fetch(*args, **kwargs)

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        metrics.DB_STATEMENTS.inc()
        return await super().fetchrow(*args, **kwargs)

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        metrics.DB_STATEMENTS.inc()
        return await super().fetchval(*args, **kwargs)


async def create_pool(
    url: str, *, min_size: int = 2, max_size: int = 10, timeout: float = 10.0
) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        command_timeout=30,
        init=_init_connection,
        reset=_reset_connection,
        connection_class=CountedConnection,
        server_settings={"application_name": "leadd"},
    )
    assert pool is not None
    return pool


async def _reset_connection(conn: asyncpg.Connection) -> None:
    # leadd keeps no session state (no LISTEN, session advisory locks, cursors or SET), so
    # asyncpg's default reset, a RESET ALL/UNLISTEN round trip on every release, is only
    # latency. A connection given back inside a transaction is still rolled back.
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class Tx:
    """One connection inside one transaction, bound to the tenant: named queries only, each
    timed under its name. Handed out by `StoreCore._tx()`; never leaves the store."""

    def __init__(self, conn: Conn, tenant_id: uuid.UUID) -> None:
        self.conn = conn
        self.tenant_id = tenant_id

    async def fetch(self, name: str, *args: Any) -> list[asyncpg.Record]:
        with metrics.STORE_DURATION.labels(name).time():
            rows: list[asyncpg.Record] = await self.conn.fetch(Q[name], self.tenant_id, *args)
            return rows

    async def fetchrow(self, name: str, *args: Any) -> asyncpg.Record | None:
        with metrics.STORE_DURATION.labels(name).time():
            row: asyncpg.Record | None = await self.conn.fetchrow(Q[name], self.tenant_id, *args)
            return row

    async def fetchval(self, name: str, *args: Any) -> Any:
        with metrics.STORE_DURATION.labels(name).time():
            return await self.conn.fetchval(Q[name], self.tenant_id, *args)

    async def execute(self, name: str, *args: Any) -> str:
        with metrics.STORE_DURATION.labels(name).time():
            status: str = await self.conn.execute(Q[name], self.tenant_id, *args)
            return status


def affected(status: str) -> int:
    """Rows changed, from a command status such as 'UPDATE 3'."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class StoreCore:
    """A pool bound to one tenant. Store parts (mixins) add one method per operation; only
    they call the `_fetch`/`_fetchrow`/`_execute`/`_tx` helpers below."""

    def __init__(self, pool: asyncpg.Pool, tenant_id: uuid.UUID) -> None:
        self.pool = pool
        self.tenant_id = tenant_id

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def _tx(self, *, readonly: bool = False) -> AsyncIterator[Tx]:
        """A unit of work. Read-only ones see one snapshot (repeatable read)."""
        isolation: Literal["repeatable_read", "read_committed"] = (
            "repeatable_read" if readonly else "read_committed"
        )
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation=isolation, readonly=readonly),
        ):
            yield Tx(conn, self.tenant_id)

    async def _fetch(self, name: str, *args: Any) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return await Tx(conn, self.tenant_id).fetch(name, *args)

    async def _fetchrow(self, name: str, *args: Any) -> asyncpg.Record | None:
        async with self.pool.acquire() as conn:
            return await Tx(conn, self.tenant_id).fetchrow(name, *args)

    async def _fetchval(self, name: str, *args: Any) -> Any:
        async with self.pool.acquire() as conn:
            return await Tx(conn, self.tenant_id).fetchval(name, *args)

    async def _execute(self, name: str, *args: Any) -> str:
        async with self.pool.acquire() as conn:
            return await Tx(conn, self.tenant_id).execute(name, *args)

    async def ping(self) -> None:
        async with self.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1", timeout=2)

    def pool_stats(self) -> tuple[int, int]:
        """(size, in use)."""
        size = self.pool.get_size()
        return size, size - self.pool.get_idle_size()

    # ------------------------------------------------------------------ config mirror

    async def sync_config(self, cfg: Config) -> None:
        """Upsert tenant, locations, hours and catalog from the YAML (the source of truth)."""
        t = self.tenant_id
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(Q["upsert_tenant"], t, cfg.tenant.name)
            ids = [loc.id for loc in cfg.locations]
            await conn.execute(Q["deactivate_missing_locations"], t, ids)
            for loc in cfg.locations:
                await conn.execute(
                    Q["upsert_location"],
                    t,
                    loc.id,
                    loc.name,
                    loc.shopmonkey_location_id,
                    loc.timezone,
                    loc.phone,
                    loc.address,
                )
                await conn.execute(Q["delete_location_hours"], t, loc.id)
                rows = [
                    (t, loc.id, day, i, start, end)
                    for day, shifts in loc.hours.items()
                    for i, (start, end) in enumerate(shifts)
                ]
                if rows:
                    await conn.executemany(Q["insert_location_hours"], rows)
                await conn.execute(Q["delete_location_services"], t, loc.id)
                services = [
                    (t, loc.id, s.name, None if s.price is None else round(s.price * 100))
                    for s in loc.services
                ]
                if services:
                    await conn.executemany(Q["insert_service"], services)

    async def count(self, table: str) -> int:
        """Row count of one of our tables for this tenant (tests, check-config, bench)."""
        if table not in _COUNTABLE:
            raise ValueError(f"not a leadd table: {table}")
        async with self.pool.acquire() as conn:
            value: int = await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE tenant_id = $1",  # noqa: S608 - whitelisted
                self.tenant_id,
            )
            return value


_COUNTABLE: Sequence[str] = (
    "locations",
    "location_hours",
    "service_catalog",
    "leads",
    "lead_events",
    "job_executions",
    "chat_sessions",
    "chat_messages",
    "touch_points",
    "message_attempts",
    "contact_optouts",
    "message_status",
    "email_events",
)
