"""The conversation, inbox and staff store parts on real PostgreSQL, without a daemon: writers
of one lead racing each other, what a customer's reply stops (and what it leaves), confirming a
requested time, the sign-in failure window, and the tenant bound to the store."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import asyncpg

from leadd import chatlinks as links
from leadd.store import Store

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
    store = Store(pool, tenant)
    lead = await _lead(pool, tenant, "t" * 43)

    async def post(i: int) -> int | None:
        return await store.add_customer_message(
            lead_id=lead,
            body=f"message {i}",
            now=T0,
            rate_window_start=T0 - dt.timedelta(minutes=1),
            rate_limit=3,
            detail={},
        )

    results = await asyncio.gather(*(post(i) for i in range(10)))
    assert sum(r is not None for r in results) == 3
    async with pool.acquire() as c:
        assert await c.fetchval("SELECT count(*) FROM chat_messages") == 3
        assert await c.fetchval("SELECT count(*) FROM lead_events WHERE to_state = 'engaged'") == 1


async def test_a_customer_reply_stops_the_sequence_but_not_a_queued_staff_message(
    pool: asyncpg.Pool,
) -> None:
    """The one "customer replied" step (SMS and chat page): engaged with its timeline row, the
    automated steps cancelled (also one waiting for a send slot), a person's queued SMS (the
    ops staff-message path) left to go."""
    tenant = uuid.uuid4()
    store = Store(pool, tenant)
    lead = await _lead(pool, tenant, "r" * 43)
    async with pool.acquire() as c:
        for i, state in enumerate(("scheduled", "sending")):
            await c.execute(
                "INSERT INTO touch_points (tenant_id, lead_id, sequence, step_index, step_name, "
                "channel, due_at, state) VALUES ($1, $2, 'default', $3, 's', 'sms', $4, $5)",
                tenant, lead, i, T0, state,
            )  # fmt: skip
    queued = await store.add_staff_message(lead, body="On our way", author="staff:a@x", now=T0)
    assert queued is not None and queued.touch_point_id is not None

    moved = await store.customer_replied(lead_id=lead, cause="chat.message", detail={"x": 1})
    assert (moved.moved, moved.stopped) == (True, 2)
    async with pool.acquire() as c:
        rows = await c.fetch("SELECT kind, state, last_error FROM touch_points ORDER BY id")
        event = await c.fetchrow("SELECT * FROM lead_events WHERE to_state = 'engaged'")
    assert [tuple(r.values()) for r in rows] == [
        ("sequence", "cancelled", "customer replied"),
        ("sequence", "cancelled", "customer replied"),
        ("staff", "scheduled", None),
    ]
    assert (event["from_state"], event["cause"], event["actor"]) == (
        "contacted", "chat.message", None
    )  # fmt: skip
    again = await store.customer_replied(lead_id=lead, cause="sms.reply", detail={})
    assert (again.moved, again.stopped) == (False, 0)  # engaged already; nothing left to stop


async def test_confirming_a_request_moves_the_lead_once_with_the_actor(pool: asyncpg.Pool) -> None:
    tenant = uuid.uuid4()
    store = Store(pool, tenant)
    lead = await _lead(pool, tenant, "c" * 43)
    window = T0 - dt.timedelta(minutes=1)
    first = await store.request_appointment(
        lead_id=lead, location_id="d", slot_start=T0, slot_end=T0 + dt.timedelta(hours=1),
        now=T0, rate_window_start=window, rate_limit=10,
    )  # fmt: skip
    second = await store.request_appointment(
        lead_id=lead, location_id="d", slot_start=T0 + dt.timedelta(hours=1),
        slot_end=T0 + dt.timedelta(hours=2), now=T0, rate_window_start=window, rate_limit=10,
    )  # fmt: skip
    assert first is not None and second is not None
    assert await store.confirm_appointment(
        lead_id=lead, request_id=first, actor="staff:a@x", now=T0
    ) is None  # replaced by the second  # fmt: skip
    results = await asyncio.gather(
        *(store.confirm_appointment(lead_id=lead, request_id=second, actor=f"staff:{i}", now=T0)
          for i in range(3))
    )  # fmt: skip
    confirmed = [r for r in results if r is not None]
    assert len(confirmed) == 1 and confirmed[0].moved
    async with pool.acquire() as c:
        event = await c.fetchrow("SELECT * FROM lead_events WHERE to_state = 'appointment_set'")
        assert await c.fetchval("SELECT state FROM leads") == "appointment_set"
    assert event["actor"].startswith("staff:") and event["cause"] == "inbox.appointment_confirmed"
    [request] = [r for r in await store.appointment_requests(lead_id=lead) if r.id == second]
    assert request.status == "confirmed" and request.confirmed_by == event["actor"]


async def test_signin_failures_are_forgotten_after_a_quiet_window_and_swept(
    pool: asyncpg.Pool,
) -> None:
    store = Store(pool, uuid.uuid4())
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
    store = Store(pool, mine)
    assert await store.chat_session(token_hash=links.token_hash("v" * 43)) is None
    assert await store.conversation_state(lead_id=lead, locations=None) is None
    assert (await store.customer_replied(lead_id=lead, cause="x", detail={})).moved is False
    assert (
        await store.add_staff_web_message(lead_id=lead, body="x", author="staff:a@x", now=T0)
        is None
    )
    assert await store.confirm_appointment(lead_id=lead, request_id=1, actor="a", now=T0) is None
    assert await store.inbox(locations=None) == []
    async with pool.acquire() as c:
        assert await c.fetchval("SELECT count(*) FROM chat_messages") == 0
        assert await c.fetchval("SELECT state FROM leads") == "contacted"
    other = Store(pool, theirs)
    session = await other.chat_session(token_hash=links.token_hash("v" * 43))
    assert session is not None and session.first_name == "Jamie"
    state = await other.conversation_state(lead_id=lead, locations=["d"])
    assert state is not None and state.location_id == "d"
    assert await other.conversation_state(lead_id=lead, locations=["elsewhere"]) is None


async def test_a_conversation_cannot_reference_another_tenants_lead(pool: asyncpg.Pool) -> None:
    """0010's tables key their lead as (tenant_id, lead_id), as 0008 made every lead child's:
    a row naming another tenant's lead is refused by the schema, whatever a query forgets."""
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    lead = await _lead(pool, theirs, "w" * 43)
    await _lead(pool, mine, "m" * 43)
    async with pool.acquire() as c:
        for statement in (
            "INSERT INTO conversations (tenant_id, lead_id) VALUES ($1, $2)",
            "INSERT INTO appointment_requests (tenant_id, lead_id, location_id, slot_start, "
            "slot_end) VALUES ($1, $2, 'd', now(), now())",
        ):
            try:
                await c.execute(statement, mine, lead)
            except asyncpg.ForeignKeyViolationError:
                continue
            raise AssertionError(f"stored: {statement}")
