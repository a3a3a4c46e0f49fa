"""The conversation store on real PostgreSQL, without a daemon: writers of one lead racing
each other, the sign-in failure window, and the tenant bound to the store."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import asyncpg

from leadd import chatlinks as links
from leadd.conversations.replies import reply_move
from leadd.store.conversations import ConversationStore

T0 = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)


async def _lead(pool: asyncpg.Pool, tenant: uuid.UUID, token: str) -> uuid.UUID:
    lead = uuid.uuid4()
    async with pool.acquire() as c:
        await c.execute("INSERT INTO tenants VALUES ($1, 'x') ON CONFLICT DO NOTHING", tenant)
        await c.execute(
            "INSERT INTO locations (tenant_id, id, name, timezone) VALUES ($1, 'd', 'd', 'UTC') "
            "ON CONFLICT DO NOTHING",
            tenant,
        )
        await c.execute(
            "INSERT INTO leads (id, tenant_id, location_id, shopmonkey_order_id, source, "
            "order_data, first_name, phone, state) VALUES ($1, $2, 'd', $3, 'test', '{}', "
            "'Jamie', '+13125550123', 'contacted')",
            lead,
            tenant,
            str(lead),
        )
        await c.execute(
            "INSERT INTO chat_sessions (id, tenant_id, lead_id, token_hash, expires_at) "
            "VALUES (gen_random_uuid(), $1, $2, $3, $4)",
            tenant,
            lead,
            links.token_hash(token),
            T0 + dt.timedelta(days=30),
        )
    return lead


async def test_concurrent_posts_of_one_link_never_exceed_the_limit(pool: asyncpg.Pool) -> None:
    """Ten posts at once against a limit of three: exactly three stored (the lead row lock
    makes the count and the insert one step), one engaged event."""
    tenant = uuid.uuid4()
    store = ConversationStore(pool, tenant)
    lead = await _lead(pool, tenant, "t" * 43)

    async def post(i: int) -> int | None:
        return await store.add_customer_message(
            lead_id=lead,
            body=f"message {i}",
            now=T0,
            rate_window_start=T0 - dt.timedelta(minutes=1),
            rate_limit=3,
            move=reply_move("chat.message", {}),
        )

    results = await asyncio.gather(*(post(i) for i in range(10)))
    assert sum(r is not None for r in results) == 3
    async with pool.acquire() as c:
        assert await c.fetchval("SELECT count(*) FROM chat_messages") == 3
        assert await c.fetchval("SELECT count(*) FROM lead_events WHERE to_state = 'engaged'") == 1


async def test_concurrent_staff_texts_of_one_lead_each_get_their_touch_point(
    pool: asyncpg.Pool,
) -> None:
    tenant = uuid.uuid4()
    store = ConversationStore(pool, tenant)
    lead = await _lead(pool, tenant, "u" * 43)
    sent = await asyncio.gather(
        *(
            store.queue_staff_sms(
                lead_id=lead, body=f"reply {i}", staff_email="a@x.example", staff_name="A", now=T0
            )
            for i in range(5)
        )
    )
    assert all(s is not None and s.message_id is not None for s in sent)
    async with pool.acquire() as c:
        rows = await c.fetch(
            "SELECT step_index, preset_body, chat_message_id FROM touch_points ORDER BY step_index"
        )
    assert [r["step_index"] for r in rows] == [0, 1, 2, 3, 4]
    assert {r["chat_message_id"] for r in rows} == {s.message_id for s in sent if s}


async def test_signin_failures_are_forgotten_after_a_quiet_window_and_swept(
    pool: asyncpg.Pool,
) -> None:
    store = ConversationStore(pool, uuid.uuid4())
    window = dt.timedelta(minutes=15)
    for minute in (0, 10, 20):  # never 15 quiet minutes: the count keeps growing
        now = T0 + dt.timedelta(minutes=minute)
        await store.record_signin_failure(keys=["account:a"], now=now, window_start=now - window)
    await store.record_signin_failure(keys=["account:b"], now=T0, window_start=T0 - window)
    now = T0 + dt.timedelta(minutes=20)
    [a] = await store.signin_failures(keys=["account:a", "account:b"], window_start=now - window)
    assert (a.key, a.failures) == ("account:a", 3)  # b has been quiet for 20 minutes
    later = T0 + dt.timedelta(minutes=40)
    await store.record_signin_failure(keys=["account:a"], now=later, window_start=later - window)
    [a] = await store.signin_failures(keys=["account:a"], window_start=later - window)
    assert a.failures == 1  # quiet since minute 20: starts again
    async with pool.acquire() as c:
        assert await c.fetchval("SELECT count(*) FROM staff_signin_failures") == 1  # b swept


async def test_a_store_sees_only_its_own_tenant(pool: asyncpg.Pool) -> None:
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    lead = await _lead(pool, theirs, "v" * 43)
    store = ConversationStore(pool, mine)
    assert await store.chat_session(token_hash=links.token_hash("v" * 43)) is None
    assert await store.conversation(lead_id=lead, locations=None) is None
    assert await store.move_lead(lead_id=lead, move=reply_move("x", {})) is None
    assert (
        await store.queue_staff_sms(
            lead_id=lead, body="x", staff_email="a@x.example", staff_name="A", now=T0
        )
        is None
    )
    assert (
        await store.add_staff_web_message(
            lead_id=lead, body="x", staff_email="a@x.example", staff_name="A", now=T0
        )
        is None
    )
    assert await store.inbox(locations=None) == []
    other = ConversationStore(pool, theirs)
    session = await other.chat_session(token_hash=links.token_hash("v" * 43))
    assert session is not None and session.first_name == "Jamie"
