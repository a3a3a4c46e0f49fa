"""Seeding helpers for the ops tests: rows written straight into PostgreSQL, each one a fact
the test states (times, states, sends), so the expected answers are known by construction."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from tests.conftest import TENANT_ID

TENANT = uuid.UUID(TENANT_ID)
OTHER_TENANT = uuid.UUID("0b5e7a36-7f4c-4c1e-9a55-5f0d3c2b0002")
T0 = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)  # a Monday, 09:00 in Chicago


def at(minutes: float = 0, *, days: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(days=days, minutes=minutes)


async def add_tenant(conn: asyncpg.Connection, tenant: uuid.UUID = TENANT) -> None:
    await conn.execute(
        "INSERT INTO tenants (id, name) VALUES ($1, 'Acme') ON CONFLICT DO NOTHING", tenant
    )


async def add_lead(
    conn: asyncpg.Connection,
    *,
    created_at: dt.datetime = T0,
    state: str = "new",
    location: str = "downtown",
    source: str = "webhook",
    first_name: str | None = "Jamie",
    last_name: str | None = "Rivera",
    phone: str | None = "+13125550123",
    email: str | None = None,
    tenant: uuid.UUID = TENANT,
    path: tuple[str, ...] = (),
    enrichment_status: str = "done",
) -> uuid.UUID:
    """A lead created at `created_at` with its 'new' event; `path` adds one event per later
    state (a minute apart), the last one being the lead's state unless `state` says otherwise."""
    lead_id = uuid.uuid4()
    final = path[-1] if path and state == "new" else state
    await conn.execute(
        """INSERT INTO leads (id, tenant_id, location_id, shopmonkey_order_id, source, order_data,
               first_name, last_name, phone, email, state, created_at, updated_at,
               enrichment_status)
           VALUES ($1, $2, $3, $4, $5, '{}', $6, $7, $8, $9, $10, $11, $11, $12)""",
        lead_id, tenant, location, f"order-{lead_id}", source, first_name, last_name, phone,
        email, final, created_at, enrichment_status,
    )  # fmt: skip
    previous = "new"
    await add_event(conn, lead_id, None, "new", "order.insert", created_at, tenant=tenant)
    for i, s in enumerate(path, start=1):
        await add_event(conn, lead_id, previous, s, "test", created_at + dt.timedelta(minutes=i))
        previous = s
    return lead_id


async def add_event(
    conn: asyncpg.Connection,
    lead_id: uuid.UUID,
    from_state: str | None,
    to_state: str,
    cause: str,
    when: dt.datetime,
    *,
    tenant: uuid.UUID = TENANT,
) -> None:
    await conn.execute(
        """INSERT INTO lead_events (tenant_id, lead_id, from_state, to_state, cause, at)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        tenant, lead_id, from_state, to_state, cause, when,
    )  # fmt: skip


async def add_touch_point(
    conn: asyncpg.Connection,
    lead_id: uuid.UUID,
    *,
    step_index: int = 0,
    channel: str = "sms",
    state: str = "scheduled",
    due_at: dt.datetime = T0,
    sent_at: dt.datetime | None = None,
    dry_run: bool = False,
    provider_id: str | None = None,
    last_error: str | None = None,
    step_name: str = "ack",
) -> int:
    tp_id: int = await conn.fetchval(
        """INSERT INTO touch_points (tenant_id, lead_id, sequence, step_index, step_name, channel,
               state, due_at, sent_at, dry_run, provider_id, last_error)
           VALUES ($1, $2, 'default', $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id""",
        TENANT, lead_id, step_index, step_name, channel, state, due_at, sent_at, dry_run,
        provider_id, last_error,
    )  # fmt: skip
    return tp_id


async def add_message(
    conn: asyncpg.Connection,
    lead_id: uuid.UUID,
    *,
    direction: str = "inbound",
    channel: str = "sms",
    body: str = "Yes please",
    provider_id: str | None = None,
    created_at: dt.datetime = T0,
) -> None:
    await conn.execute(
        """INSERT INTO chat_messages (tenant_id, lead_id, direction, channel, body, provider_id,
               created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        TENANT, lead_id, direction, channel, body, provider_id, created_at,
    )  # fmt: skip


async def set_status(conn: asyncpg.Connection, provider_id: str, status: str) -> None:
    await conn.execute(
        "INSERT INTO message_status (tenant_id, provider_id, status, rank) VALUES ($1, $2, $3, 4)",
        TENANT, provider_id, status,
    )  # fmt: skip


async def add_email_event(conn: asyncpg.Connection, tp_id: int, event: str) -> None:
    await conn.execute(
        """INSERT INTO email_events (tenant_id, sg_event_id, event, touch_point_id, payload)
           VALUES ($1, $2, $3, $4, '{}')""",
        TENANT, uuid.uuid4().hex, event, tp_id,
    )  # fmt: skip


async def opt_out(
    conn: asyncpg.Connection,
    channel: str,
    address: str,
    *,
    reason: str = "keyword",
    created_at: dt.datetime = T0,
) -> None:
    await conn.execute(
        """INSERT INTO contact_optouts (tenant_id, channel, address, reason, created_at)
           VALUES ($1, $2, $3, $4, $5)""",
        TENANT, channel, address, reason, created_at,
    )  # fmt: skip


async def rows(conn: asyncpg.Connection, query: str, *args: Any) -> list[asyncpg.Record]:
    return list(await conn.fetch(query, *args))
