"""Migration 0004 gives every existing chat session an unsubscribe token of its own."""

from __future__ import annotations

import re
import uuid

import asyncpg

from leadd import chatlinks as links
from leadd.store import core as dbmod
from tests.conftest import TENANT_ID


async def test_existing_sessions_get_distinct_strong_unsubscribe_tokens(
    empty_database_url: str,
) -> None:
    """A database from before 0004, with chat sessions: after migrating, each session has its
    own 64-hex-digit token, different from every other token and from its chat token; new
    sessions get one without the insert naming the column."""
    conn = await asyncpg.connect(empty_database_url)
    try:
        await conn.execute(dbmod.Q["create_schema_migrations"])
        for m in dbmod.load_migrations():
            if m.version < 4:
                await conn.execute(m.sql)
                await conn.execute(dbmod.Q["record_migration"], m.version, m.name, m.checksum)
        tenant = uuid.UUID(TENANT_ID)
        await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, 'Acme')", tenant)

        async def add_lead(n: int) -> uuid.UUID:
            lead = uuid.uuid4()
            await conn.execute(
                "INSERT INTO leads (id, tenant_id, location_id, shopmonkey_order_id, source,"
                " order_data) VALUES ($1, $2, 'downtown', $3, 'test', '{}')",
                lead,
                tenant,
                f"order-{n}",
            )
            return lead

        chat_tokens = [f"chat-token-{n}" for n in range(50)]
        for n, token in enumerate(chat_tokens):
            await conn.execute(
                "INSERT INTO chat_sessions (id, tenant_id, lead_id, token) VALUES ($1, $2, $3, $4)",
                uuid.uuid4(),
                tenant,
                await add_lead(n),
                token,
            )
        assert (await dbmod.migrate(conn))[0] == 4  # and any later ones
        # Since 0010 a session stores its chat token's hash, with an expiry.
        await conn.execute(
            "INSERT INTO chat_sessions (id, tenant_id, lead_id, token_hash, expires_at) "
            "VALUES ($1, $2, $3, $4, now() + interval '30 days')",
            uuid.uuid4(),
            tenant,
            await add_lead(50),
            links.token_hash("chat-token-50"),
        )

        rows = await conn.fetch("SELECT token_hash, unsubscribe_token FROM chat_sessions")
        tokens = [r["unsubscribe_token"] for r in rows]
        assert len(rows) == 51 and len(set(tokens)) == 51
        assert all(re.fullmatch(r"[0-9a-f]{64}", t) for t in tokens)
        assert not set(chat_tokens) & set(tokens)
        # Not derived from one another: the two UUIDs of one token differ.
        assert all(t[:32] != t[32:] for t in tokens)
        # 0010: the links already sent still open their page (the raw token became its hash).
        hashes = {bytes(r["token_hash"]) for r in rows}
        assert {links.token_hash(t) for t in chat_tokens} <= hashes
    finally:
        await conn.close()
