"""The funnel report on a seeded dataset whose every number is known by construction.

In the window [T0, T0 + 1 day), two locations:

downtown (4 leads: webhook x3, poll x1)
  L1 webhook  new>contacted>engaged>qualified>appointment_set>completed; SMS accepted at +10 s,
              delivered; the customer replied
  L2 webhook  new>contacted>engaged>lost; SMS accepted at +20 s, undelivered; replied
  L3 webhook  new>contacted; SMS at +30 s delivered, e-mail delivered; phone opted out (STOP)
  L4 poll     new; its SMS failed (never accepted); e-mail opted out
north (2 leads: webhook, test)
  N1 webhook  new>contacted>engaged>qualified; SMS at +60 s delivered; replied; a dry-run e-mail
  N2 test     new>contacted; only a dry-run SMS (accepted by no provider)
Outside it: a lead a minute before T0, one at T0 + 1 day (until is exclusive), and another
tenant's lead inside the window.
"""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import pytest

from leadd.store import Store
from leadd.store.models import FunnelStage, MessageCounts, Report
from tests.ops.support import (
    OTHER_TENANT,
    T0,
    add_email_event,
    add_lead,
    add_message,
    add_tenant,
    add_touch_point,
    opt_out,
    set_status,
)

STAGES = ("new", "contacted", "engaged", "qualified", "appointment_set", "completed")
SEC = dt.timedelta(seconds=1)


async def sms(
    conn: asyncpg.Connection,
    lead: uuid.UUID,
    after: float,
    *,
    status: str | None,
    dry_run: bool = False,
    index: int = 0,
) -> None:
    sid = ("DRY" if dry_run else "SM") + uuid.uuid4().hex
    await add_touch_point(
        conn, lead, step_index=index, state="sent", sent_at=T0 + after * SEC,
        provider_id=sid, dry_run=dry_run,
    )  # fmt: skip
    if status:
        await set_status(conn, sid, status)


@pytest.fixture
async def seeded(conn: asyncpg.Connection) -> None:
    path = ("contacted", "engaged", "qualified", "appointment_set", "completed")
    l1 = await add_lead(conn, path=path)
    await sms(conn, l1, 10, status="delivered")
    await add_message(conn, l1, body="yes")
    l2 = await add_lead(conn, path=("contacted", "engaged", "lost"))
    await sms(conn, l2, 20, status="undelivered")
    await add_message(conn, l2, body="how much?")
    l3 = await add_lead(conn, path=("contacted",), phone="+13125550003")
    await sms(conn, l3, 30, status="delivered")
    mail = await add_touch_point(
        conn, l3, step_index=1, channel="email", state="sent", sent_at=T0 + 90 * SEC,
        provider_id="sg-1",
    )  # fmt: skip
    await add_email_event(conn, mail, "processed")
    await add_email_event(conn, mail, "delivered")
    await opt_out(conn, "sms", "+13125550003")
    l4 = await add_lead(conn, source="poll", phone="+13125550004", email="l4@example.com")
    await add_touch_point(conn, l4, state="failed", last_error="21211: invalid number")
    await opt_out(conn, "email", "l4@example.com")

    n1 = await add_lead(conn, location="north", path=("contacted", "engaged", "qualified"))
    await sms(conn, n1, 60, status="delivered")
    await add_touch_point(
        conn, n1, step_index=1, channel="email", state="sent", sent_at=T0 + 70 * SEC,
        provider_id="DRYmail", dry_run=True,
    )  # fmt: skip
    await add_message(conn, n1, body="sure")
    n2 = await add_lead(conn, location="north", source="test", path=("contacted",))
    await sms(conn, n2, 5, status=None, dry_run=True)

    before = await add_lead(conn, created_at=T0 - dt.timedelta(minutes=1), path=("contacted",))
    await sms(conn, before, 1, status="delivered")
    await add_lead(conn, created_at=T0 + dt.timedelta(days=1))
    await add_tenant(conn, OTHER_TENANT)
    await add_lead(conn, tenant=OTHER_TENANT)


def funnel(*pairs: tuple[int, float | None]) -> tuple[FunnelStage, ...]:
    return tuple(FunnelStage(s, n, c) for s, (n, c) in zip(STAGES, pairs, strict=True))


async def report(store: Store, location: str | None = None) -> Report:
    return await store.report(since=T0, until=T0 + dt.timedelta(days=1), location=location)


@pytest.mark.usefixtures("seeded")
async def test_report_numbers_per_location_and_total(store: Store) -> None:
    r = await report(store)
    down, north = r.locations
    assert (down.location_id, north.location_id, r.total.location_id) == ("downtown", "north", None)

    assert down.leads == 4 and north.leads == 2 and r.total.leads == 6
    assert down.by_source == {"webhook": 3, "poll": 1}
    assert north.by_source == {"webhook": 1, "test": 1}
    assert r.total.by_source == {"webhook": 4, "poll": 1, "test": 1}
    assert down.by_state == {"completed": 1, "lost": 1, "contacted": 1, "new": 1}
    assert north.by_state == {"qualified": 1, "contacted": 1}

    # Reached at least this stage (L2 was lost after engaged: it still counts as engaged).
    assert down.funnel == funnel((4, None), (3, 0.75), (2, 0.6667), (1, 0.5), (1, 1.0), (1, 1.0))
    assert north.funnel == funnel((2, None), (2, 1.0), (1, 0.5), (1, 1.0), (0, 0.0), (0, None))
    assert r.total.funnel == funnel(
        (6, None), (5, 0.8333), (3, 0.6), (2, 0.6667), (1, 0.5), (1, 1.0)
    )

    assert (down.contacted, down.replied, down.reply_rate) == (3, 2, 0.6667)
    assert (north.contacted, north.replied, north.reply_rate) == (2, 1, 0.5)
    assert (r.total.contacted, r.total.replied, r.total.reply_rate) == (5, 3, 0.6)
    assert (down.lost, north.lost, r.total.lost) == (1, 0, 1)

    # Speed to lead: downtown 10/20/30 s; north 60 s (N2's dry-run send is no answer).
    assert (down.answered, down.speed_to_lead_p50, down.speed_to_lead_p90) == (3, 20.0, 28.0)
    assert (north.answered, north.speed_to_lead_p50, north.speed_to_lead_p90) == (1, 60.0, 60.0)
    # Total over 10, 20, 30, 60: median 25; p90 at rank 2.7 = 30 + 0.7 * 30.
    assert r.total.answered == 4 and r.total.speed_to_lead_p50 == 25.0
    assert r.total.speed_to_lead_p90 == pytest.approx(51.0)

    assert (down.opted_out_sms, down.opted_out_email) == (1, 1)
    assert (north.opted_out_sms, north.opted_out_email) == (0, 0)
    assert (r.total.opted_out_sms, r.total.opted_out_email) == (1, 1)

    # sent = accepted (not dry-run); failed = refused/given up, or accepted but undelivered.
    assert down.messages == {
        "sms": MessageCounts(sent=3, dry_run=0, delivered=2, failed=2),
        "email": MessageCounts(sent=1, dry_run=0, delivered=1, failed=0),
    }
    assert north.messages == {
        "sms": MessageCounts(sent=1, dry_run=1, delivered=1, failed=0),
        "email": MessageCounts(sent=0, dry_run=1, delivered=0, failed=0),
    }
    assert r.total.messages == {
        "sms": MessageCounts(sent=4, dry_run=1, delivered=3, failed=2),
        "email": MessageCounts(sent=1, dry_run=1, delivered=1, failed=0),
    }


@pytest.mark.usefixtures("seeded")
async def test_report_for_one_location(store: Store) -> None:
    r = await report(store, "north")
    [north] = r.locations
    assert r.location_id == "north" and north.location_id == "north"
    assert r.total.leads == north.leads == 2
    assert r.total.funnel == north.funnel
    assert r.total.speed_to_lead_p50 == 60.0


async def test_empty_window_is_all_zero(store: Store, conn: asyncpg.Connection) -> None:
    r = await report(store)
    assert r.locations == ()
    assert r.total.leads == 0 and r.total.reply_rate is None
    assert r.total.speed_to_lead_p50 is None and r.total.messages == {}
    assert [(s.stage, s.reached) for s in r.total.funnel] == [(s, 0) for s in STAGES]
