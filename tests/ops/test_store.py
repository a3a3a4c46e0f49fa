"""Store against a real PostgreSQL, no daemon: list filters, pagination under inserts,
state changes with their actor, pause/resume against the real claim query, staff messages,
opt-outs and the lead detail."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import asyncpg
import pytest

from leadd.store import Store
from leadd.store.models import LeadSearch
from tests.ops.support import (
    OTHER_TENANT,
    TENANT,
    add_lead,
    add_message,
    add_tenant,
    add_touch_point,
    at,
    opt_out,
    rows,
    set_status,
)


async def ids(store: Store, **filters: object) -> list[uuid.UUID]:
    page = await store.list_leads(**filters, limit=200)  # type: ignore[arg-type]
    return [lead.id for lead in page.leads]


# --------------------------------------------------------------------------- the list


async def test_every_filter_and_the_tenant(store: Store, conn: asyncpg.Connection) -> None:
    """Each filter alone selects exactly the leads built to match it; another tenant's lead,
    identical in every other way, never shows."""
    a = await add_lead(conn, created_at=at(0), first_name="Jamie", email="jamie.r@example.com")
    b = await add_lead(
        conn, created_at=at(10), state="engaged", location="north", first_name="Pat",
        last_name="Lee", phone="+15125550199", email="pat@example.org",
    )  # fmt: skip
    c = await add_lead(conn, created_at=at(20), state="lost", first_name="Sam", phone=None)
    await add_tenant(conn, OTHER_TENANT)
    await add_lead(conn, created_at=at(5), tenant=OTHER_TENANT, first_name="Jamie")

    assert await ids(store) == [c, b, a]  # newest first, this tenant only
    assert await ids(store, state="engaged") == [b]
    assert await ids(store, state="lost") == [c]
    assert await ids(store, location="north") == [b]
    assert await ids(store, since=at(10)) == [c, b]  # since is inclusive
    assert await ids(store, until=at(10)) == [a]  # until is exclusive
    assert await ids(store, since=at(5), until=at(15)) == [b]
    # q, normalised as the service does: the name, case-insensitive...
    assert await ids(store, q=LeadSearch("jamie")) == [a]
    assert await ids(store, q=LeadSearch("pat lee")) == [b]
    # ...the e-mail (stored lower-case) or part of it...
    assert await ids(store, q=LeadSearch("pat@example.org")) == [b]
    assert await ids(store, q=LeadSearch("example.org")) == [b]
    # ...the phone as E.164, or digits inside it.
    assert await ids(store, q=LeadSearch("(512) 555-0199", phone="+15125550199")) == [b]
    assert await ids(store, q=LeadSearch("555-0199", digits="5550199")) == [b]
    assert await ids(store, q=LeadSearch("nobody")) == []
    # LIKE wildcards are plain characters here (strpos, not LIKE).
    assert await ids(store, q=LeadSearch("%")) == []
    assert await ids(store, q=LeadSearch("_")) == []
    assert await ids(store, state="engaged", location="downtown") == []


async def test_pagination_is_stable_under_inserts(store: Store, conn: asyncpg.Connection) -> None:
    """Newer leads inserted between pages (and one sharing the last row's created_at) neither
    repeat nor hide a lead of the listing begun before them."""
    same_time = at(0)
    original = [await add_lead(conn, created_at=same_time if i < 4 else at(i)) for i in range(25)]
    seen: list[uuid.UUID] = []
    page = await store.list_leads(limit=10)
    seen += [lead.id for lead in page.leads]
    inserted = [await add_lead(conn, created_at=at(100 + i)) for i in range(5)]
    while page.next_cursor is not None:
        page = await store.list_leads(limit=10, cursor=page.next_cursor)
        seen += [lead.id for lead in page.leads]
        inserted.append(await add_lead(conn, created_at=at(200 + len(seen))))
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == set(original)
    # Ties on created_at are broken by id, in a fixed order.
    tied = [i for i in seen if i in original[:4]]
    assert tied == sorted(original[:4], reverse=True)
    # A fresh listing starts with the newest.
    assert (await store.list_leads(limit=1)).leads[0].id == inserted[-1]


async def test_last_page_has_no_cursor(store: Store, conn: asyncpg.Connection) -> None:
    for i in range(4):
        await add_lead(conn, created_at=at(i))
    first = await store.list_leads(limit=2)
    assert first.next_cursor is not None
    second = await store.list_leads(limit=2, cursor=first.next_cursor)
    assert len(second.leads) == 2 and second.next_cursor is None
    assert (await store.list_leads(limit=4)).next_cursor is None


# --------------------------------------------------------------------------- state


async def test_set_state_writes_the_event_with_its_actor(
    store: Store, conn: asyncpg.Connection
) -> None:
    lead = await add_lead(conn, path=("contacted",))
    change = await store.set_state(lead, state="qualified", reason="wants brakes", actor="ops-bot")
    assert change is not None and change.changed and change.from_state == "contacted"
    [event] = await rows(
        conn, "SELECT * FROM lead_events WHERE lead_id = $1 AND actor IS NOT NULL", lead
    )
    assert (event["from_state"], event["to_state"]) == ("contacted", "qualified")
    assert event["actor"] == "ops-bot" and event["cause"] == "ops.state"
    assert event["detail"] == {"reason": "wants brakes"}


async def test_forbidden_transition_changes_nothing(store: Store, conn: asyncpg.Connection) -> None:
    lead = await add_lead(conn, path=("contacted", "appointment_set"))
    before = await rows(conn, "SELECT * FROM lead_events WHERE lead_id = $1", lead)
    change = await store.set_state(lead, state="qualified", reason="r", actor="x")
    assert change is not None and not change.changed
    assert change.from_state == "appointment_set"
    assert await rows(conn, "SELECT * FROM lead_events WHERE lead_id = $1", lead) == before
    assert await conn.fetchval("SELECT state FROM leads WHERE id = $1", lead) == "appointment_set"
    assert await store.set_state(uuid.uuid4(), state="lost", reason="r", actor="x") is None


async def test_two_operators_closing_one_lead_at_once_one_wins(
    store: Store, conn: asyncpg.Connection
) -> None:
    """completed and lost for the same lead at the same moment: the lead row lock orders them,
    so the second sees a closed lead and changes nothing."""
    lead = await add_lead(conn, path=("contacted",))
    results = await asyncio.gather(
        store.set_state(lead, state="completed", reason="paid", actor="a"),
        store.set_state(lead, state="lost", reason="went elsewhere", actor="b"),
    )
    assert sorted(r.changed for r in results if r is not None) == [False, True]
    [winner] = [r for r in results if r is not None and r.changed]
    [loser] = [r for r in results if r is not None and not r.changed]
    assert loser.from_state == winner.to_state
    closing = await rows(
        conn, "SELECT to_state FROM lead_events WHERE lead_id = $1 AND actor IS NOT NULL", lead
    )
    assert [r["to_state"] for r in closing] == [winner.to_state]


async def test_closing_a_lead_cancels_its_pending_touch_points(
    store: Store, conn: asyncpg.Connection
) -> None:
    lead = await add_lead(conn)
    sent = await add_touch_point(conn, lead, state="sent", sent_at=at(0))
    later = await add_touch_point(conn, lead, step_index=1, due_at=at(days=1))
    assert (await store.set_state(lead, state="lost", reason="sold it", actor="x")) is not None
    states = dict(await conn.fetch("SELECT id, state FROM touch_points"))
    assert states == {sent: "sent", later: "cancelled"}


async def test_another_tenants_lead_cannot_be_touched(
    store: Store, conn: asyncpg.Connection
) -> None:
    await add_tenant(conn, OTHER_TENANT)
    theirs = await add_lead(conn, tenant=OTHER_TENANT)
    assert await store.lead_detail(theirs) is None
    assert await store.set_state(theirs, state="lost", reason="r", actor="x") is None
    assert await store.pause(theirs, actor="x", now=at(0)) is None
    assert await store.resume(theirs, actor="x", now=at(0)) is None
    assert await store.add_staff_message(theirs, body="hi", author="x", now=at(0)) is None
    assert await conn.fetchval("SELECT state FROM leads WHERE id = $1", theirs) == "new"


# --------------------------------------------------------------------------- pause / resume


async def claim(pool: asyncpg.Pool) -> list[int]:
    """The send loop's own claim (store.claim_touchpoints), due now."""
    claimed = await Store(pool, TENANT).claim_touchpoints(
        owner="test", limit=50, lease=60, now=dt.datetime.now(dt.UTC)
    )
    return sorted(tp.id for tp in claimed)


async def test_pause_holds_the_sequence_and_resume_skips_what_came_due(
    store: Store, conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    """Paused: the claim query leaves the lead's due steps alone (a staff message still goes).
    Resumed: steps that came due while paused are skipped, a step due later keeps its time."""
    now = dt.datetime.now(dt.UTC)
    lead = await add_lead(conn, created_at=now - dt.timedelta(hours=2))
    future_step = await add_touch_point(
        conn, lead, step_index=0, due_at=now + dt.timedelta(hours=5)
    )
    paused = await store.pause(lead, actor="ops", now=now - dt.timedelta(hours=1))
    assert paused is not None and paused.changed
    missed = await add_touch_point(conn, lead, step_index=1, due_at=now - dt.timedelta(minutes=30))
    staff = await store.add_staff_message(
        lead, body="We can fit you in at 3", author="ops", now=now
    )
    assert staff is not None and staff.touch_point_id is not None

    assert await claim(pool) == [staff.touch_point_id]  # the automated step waits
    again = await store.pause(lead, actor="ops", now=now)
    assert again is not None and not again.changed  # pausing twice is a no-op

    resumed = await store.resume(lead, actor="ops2", now=now)
    assert resumed is not None and resumed.changed and resumed.skipped == 1
    states = dict(await conn.fetch("SELECT id, state FROM touch_points WHERE lead_id = $1", lead))
    assert states[missed] == "skipped" and states[future_step] == "scheduled"
    reason = await conn.fetchval("SELECT last_error FROM touch_points WHERE id = $1", missed)
    assert reason == "came due while the lead was paused"
    assert await conn.fetchval("SELECT paused_at FROM leads WHERE id = $1", lead) is None
    events = await rows(
        conn, "SELECT cause, actor, detail FROM lead_events WHERE lead_id = $1 AND actor IS NOT NULL ORDER BY id", lead
    )  # fmt: skip
    assert [(e["cause"], e["actor"]) for e in events] == [
        ("ops.paused", "ops"),
        ("ops.resumed", "ops2"),
    ]
    assert events[1]["detail"]["skipped"] == 1
    # Not paused any more: resuming again changes nothing, and the loop may claim it later.
    assert (await store.resume(lead, actor="ops", now=now)).changed is False  # type: ignore[union-attr]


async def test_a_closed_lead_is_not_paused(store: Store, conn: asyncpg.Connection) -> None:
    lead = await add_lead(conn, path=("lost",))
    change = await store.pause(lead, actor="x", now=at(0))
    assert change is not None and not change.changed and change.state == "lost"
    assert await conn.fetchval("SELECT paused_at FROM leads WHERE id = $1", lead) is None


# --------------------------------------------------------------------------- staff messages


async def test_staff_message_to_an_opted_out_phone_is_refused(
    store: Store, conn: asyncpg.Connection
) -> None:
    lead = await add_lead(conn, phone="+13125550123")
    await opt_out(conn, "sms", "+13125550123")
    queued = await store.add_staff_message(lead, body="hello", author="ops", now=at(0))
    assert queued is not None and queued.refused == "opted_out" and queued.touch_point_id is None
    assert await rows(conn, "SELECT * FROM touch_points") == []

    no_phone = await add_lead(conn, phone=None)
    queued = await store.add_staff_message(no_phone, body="hello", author="ops", now=at(0))
    assert queued is not None and queued.refused == "no_phone"
    assert await rows(conn, "SELECT * FROM touch_points") == []


async def test_staff_messages_sent_together_each_get_a_row(
    store: Store, conn: asyncpg.Connection
) -> None:
    """Two people replying to one lead at the same moment: both messages are queued (the lead
    row lock orders them), with the body and author each wrote."""
    lead = await add_lead(conn)
    results = await asyncio.gather(
        *(store.add_staff_message(lead, body=f"msg {i}", author=f"agent{i}", now=at(i)) for i in range(4))
    )  # fmt: skip
    assert all(r is not None and r.touch_point_id for r in results)
    queued = await rows(
        conn, "SELECT kind, sequence, step_index, channel, body, author, state FROM touch_points"
    )
    assert sorted(r["step_index"] for r in queued) == [0, 1, 2, 3]
    assert {(r["body"], r["author"]) for r in queued} == {
        (f"msg {i}", f"agent{i}") for i in range(4)
    }
    assert {(r["kind"], r["sequence"], r["channel"], r["state"]) for r in queued} == {
        ("staff", "staff", "sms", "scheduled")
    }


# --------------------------------------------------------------------------- opt-outs


async def test_opt_out_pages_and_lifting_an_email_opt_out(
    store: Store, conn: asyncpg.Connection
) -> None:
    for i in range(5):
        await opt_out(conn, "email", f"person{i}@example.com", created_at=at(i))
    await opt_out(conn, "sms", "+13125550123", created_at=at(2))
    first = await store.list_opt_outs(limit=4)
    rest = await store.list_opt_outs(limit=4, cursor=first.next_cursor)
    listed = [(o.channel, o.address) for o in (*first.opt_outs, *rest.opt_outs)]
    assert len(listed) == len(set(listed)) == 6 and rest.next_cursor is None
    assert listed[0] == ("email", "person4@example.com")  # newest first
    only_sms = await store.list_opt_outs(channel="sms")
    assert [o.address for o in only_sms.opt_outs] == ["+13125550123"]

    lifted = await store.delete_email_opt_out("person1@example.com", actor="ops-bot")
    assert lifted is not None and lifted.reason == "keyword"
    [record] = await rows(conn, "SELECT * FROM contact_optout_lifts")
    assert record["address"] == "person1@example.com" and record["lifted_by"] == "ops-bot"
    assert record["opted_out_at"] == at(1)
    assert await store.delete_email_opt_out("person1@example.com", actor="ops-bot") is None
    # The e-mail lift never touches an SMS opt-out of the same "address".
    assert await store.delete_email_opt_out("+13125550123", actor="x") is None
    assert len((await store.list_opt_outs(channel="sms")).opt_outs) == 1


# --------------------------------------------------------------------------- detail


async def test_lead_detail_has_the_whole_timeline(store: Store, conn: asyncpg.Connection) -> None:
    lead = await add_lead(conn, path=("contacted", "engaged"), email="jamie@example.com")
    await add_touch_point(conn, lead, state="sent", sent_at=at(0.1), provider_id="SMreal")
    await add_touch_point(
        conn, lead, step_index=1, channel="email", state="sent", sent_at=at(0.2),
        dry_run=True, provider_id="DRY123",
    )  # fmt: skip
    await add_touch_point(
        conn, lead, step_index=2, state="skipped", last_error="lead is engaged", step_name="day1"
    )
    await set_status(conn, "SMreal", "delivered")
    await add_message(conn, lead, direction="outbound", body="Hi Jamie", provider_id="SMreal",
                      created_at=at(0.1))  # fmt: skip
    await add_message(conn, lead, direction="outbound", channel="email", body="Estimate",
                      provider_id="DRY123", created_at=at(0.2))  # fmt: skip
    await add_message(conn, lead, body="Yes please", created_at=at(5))
    await opt_out(conn, "email", "jamie@example.com", created_at=at(6))
    await opt_out(conn, "email", "someone.else@example.com")

    detail = await store.lead_detail(lead)
    assert detail is not None
    assert [e.to_state for e in detail.events] == ["new", "contacted", "engaged"]
    assert [(t.step_name, t.state, t.last_error) for t in detail.touch_points][2] == (
        "day1", "skipped", "lead is engaged",
    )  # fmt: skip
    assert [(m.direction, m.body, m.dry_run, m.delivery_status) for m in detail.messages] == [
        ("outbound", "Hi Jamie", False, "delivered"),
        ("outbound", "Estimate", True, None),
        ("inbound", "Yes please", False, None),
    ]
    assert [(o.channel, o.address) for o in detail.opt_outs] == [("email", "jamie@example.com")]


@pytest.mark.parametrize("lead_id", [uuid.uuid4(), uuid.UUID(int=0)])
async def test_unknown_lead_has_no_detail(store: Store, lead_id: uuid.UUID) -> None:
    assert await store.lead_detail(lead_id) is None
