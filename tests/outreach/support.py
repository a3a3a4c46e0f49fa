"""Seeding helpers for the outreach service tests: a config wired to the fake Twilio, leads
and touch points written straight into PostgreSQL, fixed instants in Chicago time."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from leadd import chatlinks
from leadd.config import Config
from tests.conftest import make_config
from tests.e2e.outreach_support import provider_sections
from tests.fakes.twilio import FakeTwilio

CHICAGO = ZoneInfo("America/Chicago")
PHONE = "+13125550123"  # Illinois: one time zone, no state rule beyond 09:00-20:00
OWNER = "outreach-test"
SEQUENCE = {
    "default": [
        {
            "name": "ack",
            "channel": "sms",
            "delay": "0s",
            "after": "created",
            "template": "Hi {{ customer.first_name }}, thanks from {{ location.name }}!",
        },
        {
            "name": "later",
            "channel": "sms",
            "delay": "2h",
            "after": "created",
            "template": "Still there, {{ customer.first_name }}?",
        },
        {
            "name": "mail",
            "channel": "email",
            "delay": "1d",
            "after": "created",
            "subject": "Your visit",
            "template": "Hello {{ customer.first_name }}",
        },
    ]
}


def chicago(day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    """January `day` 2030 (the 7th is a Monday) at hour:minute Chicago time, in UTC."""
    local = dt.datetime(2030, 1, day, hour, minute, second, tzinfo=CHICAGO)
    return local.astimezone(dt.UTC)


def config(database_url: str, twilio: FakeTwilio, **overrides: Any) -> Config:
    tp = {"retry_base": "100ms", "retry_cap": "1s", "lease": "30s", "max_attempts": 3}
    tp["reconcile_delay"] = "100ms"  # production: 5 s
    return make_config(
        database_url,
        **provider_sections(twilio),
        sequences=SEQUENCE,
        touchpoints=tp | overrides.pop("touchpoints", {}),
        **overrides,
    )


async def add_lead(
    conn: asyncpg.Connection,
    cfg: Config,
    *,
    created_at: dt.datetime,
    phone: str | None = PHONE,
    email: str | None = None,
    state: str = "new",
    unsubscribe_token: str | None = None,
) -> uuid.UUID:
    lead_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO leads (id, tenant_id, location_id, shopmonkey_order_id, source, order_data,
               first_name, last_name, phone, email, state, created_at, updated_at,
               enrichment_status)
           VALUES ($1, $2, 'downtown', $3, 'webhook', '{}', 'Jamie', 'Rivera', $4, $5, $6,
                   $7, $7, 'done')""",
        lead_id, cfg.tenant.id, f"order-{lead_id}", phone, email, state, created_at,
    )  # fmt: skip
    if unsubscribe_token is not None:
        await conn.execute(
            """INSERT INTO chat_sessions (id, tenant_id, lead_id, token_hash, expires_at,
                   unsubscribe_token)
               VALUES (gen_random_uuid(), $1, $2, $3, now() + interval '30 days', $4)""",
            cfg.tenant.id, lead_id, chatlinks.session_hash(cfg, lead_id), unsubscribe_token,
        )  # fmt: skip
    return lead_id


async def add_touch_point(
    conn: asyncpg.Connection,
    cfg: Config,
    lead_id: uuid.UUID,
    *,
    step: int,
    due_at: dt.datetime,
    **columns: Any,
) -> int:
    """A touch point of the default sequence; `columns` set any other column (a row left
    `sending` by a dead daemon, say)."""
    name, channel = SEQUENCE["default"][step]["name"], SEQUENCE["default"][step]["channel"]
    tp_id: int = await conn.fetchval(
        """INSERT INTO touch_points (tenant_id, lead_id, sequence, step_index, step_name, channel,
               due_at) VALUES ($1, $2, 'default', $3, $4, $5, $6) RETURNING id""",
        cfg.tenant.id, lead_id, step, name, channel, due_at,
    )  # fmt: skip
    for column, value in columns.items():
        await conn.execute(
            f"UPDATE touch_points SET {column} = $2 WHERE id = $1",  # noqa: S608 - test names
            tp_id,
            value,
        )
    return tp_id


async def row(conn: asyncpg.Connection, tp_id: int) -> asyncpg.Record:
    found = await conn.fetchrow("SELECT * FROM touch_points WHERE id = $1", tp_id)
    assert found is not None
    return found
