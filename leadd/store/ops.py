"""The ops gateway (issue 9): reading and steering leads, opt-outs and the funnel report.

One method per operation, keyword parameters, frozen dataclasses out. The tenant is bound when
the store is opened; every query takes it as $1 (sql/ops.sql). A change that spans statements
is one method and one transaction, with the lead row locked first (ops_lock_lead), so it
serialises with intake and inbound SMS, which lock the same row.
"""

from __future__ import annotations

import datetime as dt
import uuid

from leadd.lifecycle import STATES, TERMINAL, can_transition
from leadd.store.core import StoreCore
from leadd.store.models import (
    LeadCursor,
    LeadDetail,
    LeadPage,
    LeadSearch,
    LeadSummary,
    OptOut,
    OptOutCursor,
    OptOutPage,
    PauseChange,
    Report,
    StaffMessage,
    StateChange,
)

# The report's funnel: every lifecycle state but `lost`, in lifecycle order.
FUNNEL: tuple[str, ...] = tuple(s for s in STATES if s != "lost")
# Keyset positions before every row: the first page of a newest-first list.
_END_OF_TIME = dt.datetime.max.replace(tzinfo=dt.UTC)
_MAX_UUID = uuid.UUID(int=2**128 - 1)

CAUSE_STATE = "ops.state"
CAUSE_PAUSED = "ops.paused"
CAUSE_RESUMED = "ops.resumed"
MISSED_WHILE_PAUSED = "came due while the lead was paused"


class OpsStore(StoreCore):
    """Reading and steering leads, for the ops API, the CLI and the inbox."""

    # ------------------------------------------------------------------ reading leads

    async def list_leads(
        self,
        *,
        state: str | None = None,
        location: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        q: LeadSearch | None = None,
        cursor: LeadCursor | None = None,
        limit: int = 50,
    ) -> LeadPage:
        """Leads newest first, created in [since, until), after `cursor`; one page."""
        rows = await self._fetch(
            "ops_list_leads",
            state,
            location,
            since,
            until,
            cursor.created_at if cursor else _END_OF_TIME,
            cursor.id if cursor else _MAX_UUID,
            q.phone if q else None,
            q.text if q else None,
            q.digits if q else None,
            limit + 1,  # one more than asked: is there a next page?
        )
        leads = tuple(LeadSummary.from_row(r) for r in rows[:limit])
        more = len(rows) > limit
        return LeadPage(leads, leads[-1].cursor if more and leads else None)

    async def lead_detail(self, lead_id: uuid.UUID) -> LeadDetail | None:
        """The lead with its timeline: events, touch points, transcript, applying opt-outs."""
        async with self._tx(readonly=True) as tx:
            lead = await tx.fetchrow("ops_lead", lead_id)
            if lead is None:
                return None
            events = await tx.fetch("ops_lead_events", lead_id)
            touch_points = await tx.fetch("ops_lead_touch_points", lead_id)
            messages = await tx.fetch("ops_lead_messages", lead_id)
            opt_outs = await tx.fetch("ops_lead_opt_outs", lead["phone"], lead["email"])
        return LeadDetail.from_row(
            lead, events=events, touch_points=touch_points, messages=messages, opt_outs=opt_outs
        )

    # ------------------------------------------------------------------ steering leads

    async def set_state(
        self, lead_id: uuid.UUID, *, state: str, reason: str, actor: str
    ) -> StateChange | None:
        """Move the lead to `state` if the lifecycle allows it (lifecycle.can_transition), with a
        timeline row naming the actor; a terminal state cancels its pending touch points.
        None: no such lead. `changed` False: forbidden from the current state."""
        async with self._tx() as tx:
            row = await tx.fetchrow("ops_lock_lead", lead_id)
            if row is None:
                return None
            current = row["state"]
            if not can_transition(current, state):
                return StateChange(lead_id, current, state, changed=False)
            await tx.execute("set_lead_state", lead_id, state)
            await tx.execute("ops_insert_event", lead_id, current, state, CAUSE_STATE,
                {"reason": reason}, actor,
            )  # fmt: skip
            if state in TERMINAL:
                await tx.execute("cancel_lead_touchpoints", lead_id, f"lead {state}")
        return StateChange(lead_id, current, state, changed=True)

    async def pause(
        self, lead_id: uuid.UUID, *, actor: str, now: dt.datetime
    ) -> PauseChange | None:
        """Stop the lead's automated sequence (staff messages still go). A closed lead has no
        sequence to pause: returned unchanged, as is one already paused."""
        async with self._tx() as tx:
            row = await tx.fetchrow("ops_lock_lead", lead_id)
            if row is None:
                return None
            state = row["state"]
            if row["paused_at"] is not None or state in TERMINAL:
                return PauseChange(lead_id, state, row["paused_at"], changed=False)
            await tx.execute("ops_set_paused", lead_id, now)
            await tx.execute("ops_insert_event", lead_id, state, state, CAUSE_PAUSED, {}, actor)
        return PauseChange(lead_id, state, now, changed=True)

    async def resume(
        self, lead_id: uuid.UUID, *, actor: str, now: dt.datetime
    ) -> PauseChange | None:
        """Restart the sequence from its next step that is not yet due; steps that came due
        while paused are skipped (sql: ops_skip_missed_steps says why)."""
        async with self._tx() as tx:
            row = await tx.fetchrow("ops_lock_lead", lead_id)
            if row is None:
                return None
            state, paused_at = row["state"], row["paused_at"]
            if paused_at is None:
                return PauseChange(lead_id, state, None, changed=False)
            skipped = await tx.fetch(
                "ops_skip_missed_steps", lead_id, paused_at, now, MISSED_WHILE_PAUSED
            )
            await tx.execute("ops_set_paused", lead_id, None)
            await tx.execute("ops_insert_event", lead_id, state, state, CAUSE_RESUMED,
                {"paused_at": paused_at.isoformat(), "skipped": len(skipped)}, actor,
            )  # fmt: skip
        return PauseChange(lead_id, state, None, changed=True, skipped=len(skipped))

    async def add_staff_message(
        self, lead_id: uuid.UUID, *, body: str, author: str, now: dt.datetime
    ) -> StaffMessage | None:
        """Queue a person's SMS to the lead's phone, due now, unless the phone is opted out
        (or unknown). The send loop delivers it through the same gate as every send (the
        opt-out is checked again there); quiet hours and the daily cap do not hold it."""
        async with self._tx() as tx:
            row = await tx.fetchrow("ops_lock_lead", lead_id)
            if row is None:
                return None
            if row["phone"] is None:
                return StaffMessage(lead_id, None, None, refused="no_phone")
            if row["sms_opted_out"]:
                return StaffMessage(lead_id, None, None, refused="opted_out")
            queued = await tx.fetchrow("ops_insert_staff_message", lead_id, now, body, author)
        assert queued is not None
        return StaffMessage(lead_id, queued["id"], queued["due_at"])

    # ------------------------------------------------------------------ opt-outs

    async def list_opt_outs(
        self, *, channel: str | None = None, cursor: OptOutCursor | None = None, limit: int = 50
    ) -> OptOutPage:
        rows = await self._fetch(
            "ops_list_opt_outs",
            channel,
            cursor.created_at if cursor else _END_OF_TIME,
            cursor.channel if cursor else "",
            cursor.address if cursor else "",
            limit + 1,
        )
        items = tuple(OptOut.from_row(r) for r in rows[:limit])
        last = items[-1] if len(rows) > limit and items else None
        return OptOutPage(
            items, OptOutCursor(last.created_at, last.channel, last.address) if last else None
        )

    async def delete_email_opt_out(self, address: str, *, actor: str) -> OptOut | None:
        """Re-subscribe an e-mail address (kept in contact_optout_lifts with the actor).
        None: it was not opted out. SMS opt-outs have no such method, on purpose."""
        row = await self._fetchrow("ops_lift_email_opt_out", address, actor)
        return OptOut.from_row(row) if row is not None else None

    # ------------------------------------------------------------------ report

    async def report(
        self, *, since: dt.datetime, until: dt.datetime, location: str | None = None
    ) -> Report:
        """The funnel over leads created in [since, until), per location and in total."""
        row = await self._fetchrow("ops_report", since, until, location, list(FUNNEL))
        assert row is not None
        return Report.from_row(row, since=since, until=until, location_id=location, stages=FUNNEL)
