"""Schema migrations and the YAML -> database mirror, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from leadd.store import core as dbmod
from tests.conftest import make_config

OTHER_TENANT = "0b5e7a36-7f4c-4c1e-9a55-5f0d3c2b0002"


@pytest.fixture
async def empty_conn(empty_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(empty_database_url)
    yield conn
    await conn.close()


async def applied(conn: asyncpg.Connection) -> list[tuple[int, str, str]]:
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY 1")
    return [(r["version"], r["name"], r["checksum"]) for r in rows]


def expected_rows() -> list[tuple[int, str, str]]:
    return [(m.version, m.name, m.checksum) for m in dbmod.load_migrations()]


async def test_schema_applies_once_and_rerun_is_a_no_op(empty_conn: asyncpg.Connection) -> None:
    migrations = dbmod.load_migrations()
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})
    assert await dbmod.migrate(empty_conn) == [m.version for m in migrations]
    assert await applied(empty_conn) == expected_rows()
    tables = await empty_conn.fetchval(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY($1)",
        ["tenants", "leads", "touch_points", "contact_optouts"],
    )
    assert tables == 4

    assert await dbmod.migrate(empty_conn) == []
    assert await applied(empty_conn) == expected_rows()


async def test_concurrent_appliers_apply_the_schema_exactly_once(empty_database_url: str) -> None:
    """Two daemons starting together on an empty database: the advisory lock serialises them."""
    a, b = await asyncpg.connect(empty_database_url), await asyncpg.connect(empty_database_url)
    try:
        results = await asyncio.gather(dbmod.migrate(a), dbmod.migrate(b))
        versions = [m.version for m in dbmod.load_migrations()]
        assert sorted(results, key=len) == [[], versions]
        assert await applied(a) == expected_rows()
    finally:
        await a.close()
        await b.close()


async def test_changed_applied_file_raises(
    empty_conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    await dbmod.migrate(empty_conn)
    before = await applied(empty_conn)
    original = dbmod.load_migrations()
    edited = [dataclasses.replace(original[0], sql=original[0].sql + "\n-- edited\n")] + original[
        1:
    ]
    monkeypatch.setattr(dbmod, "load_migrations", lambda: edited)
    with pytest.raises(dbmod.MigrationError, match=r"0001_core\.sql changed after it was applied"):
        await dbmod.migrate(empty_conn)
    assert await applied(empty_conn) == before  # nothing recorded by the failed run


async def test_a_failing_migration_rolls_back_entirely(
    empty_conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = [*dbmod.load_migrations(), dbmod.Migration(9999, "broken", "SELECT no_such_fn()")]
    monkeypatch.setattr(dbmod, "load_migrations", lambda: broken)
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await dbmod.migrate(empty_conn)
    exists = await empty_conn.fetchval("SELECT to_regclass('public.tenants') IS NOT NULL")
    assert exists is False


async def counts(database: dbmod.StoreCore) -> dict[str, int]:
    return {t: await database.count(t) for t in ("locations", "location_hours", "service_catalog")}


async def test_sync_config_upserts_idempotently_and_scopes_by_tenant(
    pool: asyncpg.Pool, database_url: str
) -> None:
    cfg = make_config(database_url)
    [loc] = cfg.locations
    split = dataclasses.replace(
        loc, id="north", name="North", hours={0: ((480, 720), (780, 1080)), 5: ((540, 780),)}
    )
    cfg = dataclasses.replace(cfg, locations=(loc, split))
    acme = dbmod.StoreCore(pool, cfg.tenant.id)

    await acme.sync_config(cfg)
    first = await counts(acme)
    # downtown: six open days + north: a split Monday and Saturday; two services each
    assert first == {"locations": 2, "location_hours": 6 + 3, "service_catalog": 4}
    await acme.sync_config(cfg)
    assert await counts(acme) == first

    other_cfg = dataclasses.replace(
        cfg,
        tenant=dataclasses.replace(cfg.tenant, id=uuid.UUID(OTHER_TENANT), name="Other Garage"),
        locations=(dataclasses.replace(loc, name="Other Downtown", services=()),),
    )
    other = dbmod.StoreCore(pool, other_cfg.tenant.id)
    await other.sync_config(other_cfg)
    assert await counts(other) == {"locations": 1, "location_hours": 6, "service_catalog": 0}
    assert await counts(acme) == first  # same location id, different tenant: untouched

    async with pool.acquire() as conn:
        names = await conn.fetch("SELECT tenant_id, name FROM locations WHERE id = 'downtown'")
        tenants = await conn.fetch("SELECT id, name FROM tenants ORDER BY name")
    assert {(r["tenant_id"], r["name"]) for r in names} == {
        (cfg.tenant.id, "Acme Auto Care Downtown"),
        (uuid.UUID(OTHER_TENANT), "Other Downtown"),
    }
    assert [r["name"] for r in tenants] == ["Acme Auto Care", "Other Garage"]

    # Dropping a location from the YAML keeps its row (leads reference it) but deactivates it.
    await acme.sync_config(dataclasses.replace(cfg, locations=(loc,)))
    async with pool.acquire() as conn:
        active = await conn.fetch(
            "SELECT id, active FROM locations WHERE tenant_id = $1 ORDER BY id", cfg.tenant.id
        )
    assert [(r["id"], r["active"]) for r in active] == [("downtown", True), ("north", False)]


async def test_lead_children_cannot_point_at_another_tenants_lead(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """Tenancy is in the schema: a touch point, event, chat session or message of tenant B
    naming tenant A's lead is refused by the composite foreign keys (0008), not only by the
    queries' tenant filters."""
    cfg = make_config(database_url)
    other_id = uuid.UUID(OTHER_TENANT)
    other_cfg = dataclasses.replace(
        cfg, tenant=dataclasses.replace(cfg.tenant, id=other_id, name="Other Garage")
    )
    await dbmod.StoreCore(pool, cfg.tenant.id).sync_config(cfg)
    await dbmod.StoreCore(pool, other_id).sync_config(other_cfg)
    lead = uuid.uuid4()
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO leads (id, tenant_id, location_id, shopmonkey_order_id, source, order_data)"
            " VALUES ($1, $2, 'downtown', 'o-1', 'test', '{}')",
            lead,
            cfg.tenant.id,
        )
        hostile = [
            "INSERT INTO lead_events (tenant_id, lead_id, to_state, cause) VALUES ($1, $2, 'new', 'x')",
            "INSERT INTO touch_points (tenant_id, lead_id, sequence, step_index, step_name, channel,"
            " due_at) VALUES ($1, $2, 'default', 0, 's', 'sms', now())",
            "INSERT INTO chat_messages (tenant_id, lead_id, direction, channel, body)"
            " VALUES ($1, $2, 'inbound', 'sms', 'hi')",
            "INSERT INTO leads (id, tenant_id, location_id, shopmonkey_order_id, source,"
            " order_data, attached_to) VALUES (gen_random_uuid(), $1, 'downtown', 'o-2', 'test',"
            " '{}', $2)",
        ]
        for statement in hostile:
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await conn.execute(statement, other_id, lead)
            await conn.execute(statement.replace("'o-2'", "'o-3'"), cfg.tenant.id, lead)
