"""The pool counts every statement it sends to PostgreSQL (`leadd_db_statements_total`):
the measure a round-trip budget per lead is held to."""

from __future__ import annotations

import asyncpg

from leadd import metrics


def statements() -> float:
    value = metrics.REGISTRY.get_sample_value("leadd_db_statements_total")
    assert value is not None
    return value


async def test_each_statement_and_transaction_boundary_is_one_round_trip(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        before = statements()
        await conn.fetchval("SELECT 1")
        await conn.fetchrow("SELECT 1 AS a")
        await conn.fetch("SELECT 1")
        await conn.execute("SELECT 1")
        assert statements() - before == 4
        before = statements()
        async with conn.transaction():
            await conn.fetchval("SELECT $1::int", 1)
        assert statements() - before == 3  # BEGIN, the statement, COMMIT
