"""The conversation store: the customer's chat page and the staff inbox (issue 10).

`ConversationStore(pool, tenant_id)`: the tenant is bound once; one method per operation, with
keyword parameters, returning frozen dataclasses from chat_models.py. Every unit of work that
changes a lead's conversation locks the lead row first, so two writers of one lead (two
browser tabs, an SMS arriving while the page posts, two daemons) queue instead of racing.
Queries: leadd/sql/conversations.sql.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from leadd.store.chat_models import (
    AppointmentRequest,
    ChatSession,
    LeadMove,
    LockedLead,
    Message,
    Move,
    StaffSms,
)
from leadd.store.inbox import InboxQueries
from leadd.store.sqlbase import Conn, load_queries
from leadd.store.staff import StaffQueries


class ConversationStore(InboxQueries, StaffQueries):
    QUERIES = load_queries("conversations.sql")

    # ------------------------------------------------------------------ the chat page

    async def chat_session(self, *, token_hash: bytes) -> ChatSession | None:
        row = await self._fetchrow("chat_session", token_hash)
        return ChatSession.from_row(row) if row else None

    async def touch_seen(self, *, lead_id: uuid.UUID, at: dt.datetime) -> None:
        """The customer's page is open now (loaded, or its live stream still connected)."""
        await self._execute("touch_seen", lead_id, at)

    async def page_closed(self, *, lead_id: uuid.UUID, open_until: dt.datetime) -> None:
        """The page's live stream ended: it counts as open no later than `open_until`."""
        await self._execute("page_closed", lead_id, open_until)

    async def page_seen_at(self, *, lead_id: uuid.UUID) -> dt.datetime | None:
        row = await self._fetchrow("page_seen_at", lead_id)
        return row["seen_at"] if row else None

    async def thread(
        self, *, lead_id: uuid.UUID, channels: Sequence[str], limit: int = 200
    ) -> list[Message]:
        """The latest `limit` messages on `channels`, oldest first."""
        rows = await self._fetch("thread", lead_id, limit, list(channels))
        return [Message.from_row(r) for r in reversed(rows)]

    async def add_customer_message(
        self,
        *,
        lead_id: uuid.UUID,
        body: str,
        now: dt.datetime,
        rate_window_start: dt.datetime,
        rate_limit: int,
        move: LeadMove,
    ) -> int | None:
        """A message from the chat page, and what a customer's message does to the lead
        (`move`), in one transaction. None when the link posted `rate_limit` times since
        `rate_window_start` (nothing stored) or the lead is gone."""
        async with self._tx() as conn:
            if not await self._open_for_posts(conn, lead_id, rate_window_start, rate_limit):
                return None
            row = await self._fetchrow(
                "insert_web_message", lead_id, "inbound", body, None, None, now, conn=conn
            )
            assert row is not None
            await self.move_lead(lead_id=lead_id, move=move, conn=conn)
            return int(row["id"])

    async def request_appointment(
        self,
        *,
        lead_id: uuid.UUID,
        location_id: str,
        slot_start: dt.datetime,
        slot_end: dt.datetime,
        now: dt.datetime,
        rate_window_start: dt.datetime,
        rate_limit: int,
        move: LeadMove,
    ) -> int | None:
        """A time the customer asked for (an earlier unconfirmed one is replaced), and the
        lead's move, in one transaction; None when rate-limited or the lead is gone."""
        async with self._tx() as conn:
            if not await self._open_for_posts(conn, lead_id, rate_window_start, rate_limit):
                return None
            await self._execute("replace_appointment_requests", lead_id, conn=conn)
            row = await self._fetchrow(
                "insert_appointment_request",
                lead_id,
                location_id,
                slot_start,
                slot_end,
                now,
                conn=conn,
            )
            assert row is not None
            await self.move_lead(lead_id=lead_id, move=move, conn=conn)
            return int(row["id"])

    async def _open_for_posts(
        self, conn: Conn, lead_id: uuid.UUID, since: dt.datetime, limit: int
    ) -> bool:
        if await self._lock(conn, lead_id) is None:
            return False
        row = await self._fetchrow("recent_customer_posts", lead_id, since, conn=conn)
        return row is not None and int(row["n"]) < limit

    async def appointment_requests(self, *, lead_id: uuid.UUID) -> list[AppointmentRequest]:
        rows = await self._fetch("appointment_requests", lead_id)
        return [AppointmentRequest.from_row(r) for r in rows]

    # ------------------------------------------------------------------ lead state

    async def move_lead(
        self, *, lead_id: uuid.UUID, move: LeadMove, conn: Conn | None = None
    ) -> Move | None:
        """Apply `move` if the lead is in one of `move.allowed_from`; None for no such lead.

        `conn`: the transaction of a caller that already holds the lead's row lock (inbound
        SMS still runs its own; it goes once that handler is on the store). Without it, the
        lead is locked here."""
        if conn is None:
            async with self._tx() as c:
                if await self._lock(c, lead_id) is None:
                    return None
                return await self.move_lead(lead_id=lead_id, move=move, conn=c)
        row = await self._fetchrow(
            "move_lead",
            lead_id,
            move.target,
            list(move.allowed_from),
            move.cause,
            dict(move.detail),
            move.stop_automation,
            conn=conn,
        )
        if row is None:
            return None
        return Move(row["from_state"], row["moved"], int(row["stopped"]))

    async def confirm_appointment(
        self,
        *,
        lead_id: uuid.UUID,
        request_id: int,
        by: str,
        now: dt.datetime,
        move: LeadMove,
    ) -> Move | None:
        """Confirm a requested time and apply `move`; None when there is no such request
        waiting (already confirmed, replaced, or another lead's)."""
        async with self._tx() as conn:
            if await self._lock(conn, lead_id) is None:
                return None
            row = await self._fetchrow(
                "confirm_appointment_request", lead_id, request_id, now, by, conn=conn
            )
            if row is None:
                return None
            return await self.move_lead(lead_id=lead_id, move=move, conn=conn)

    async def _lock(self, conn: Conn, lead_id: uuid.UUID) -> LockedLead | None:
        row = await self._fetchrow("lock_lead", lead_id, conn=conn)
        return LockedLead(row["state"], row["phone"], row["location_id"]) if row else None

    # ------------------------------------------------------------------ staff replies

    async def add_staff_web_message(
        self,
        *,
        lead_id: uuid.UUID,
        body: str,
        staff_email: str,
        staff_name: str,
        now: dt.datetime,
    ) -> int | None:
        """A reply shown on the customer's page (not sent anywhere)."""
        async with self._tx() as conn:
            if await self._lock(conn, lead_id) is None:
                return None
            row = await self._fetchrow(
                "insert_web_message",
                lead_id,
                "outbound",
                body,
                staff_email,
                staff_name,
                now,
                conn=conn,
            )
            return int(row["id"]) if row else None

    async def queue_staff_sms(
        self,
        *,
        lead_id: uuid.UUID,
        body: str,
        staff_email: str,
        staff_name: str,
        now: dt.datetime,
    ) -> StaffSms | None:
        """A reply by SMS: refused for an opted-out or missing number (nothing stored), else
        its transcript line and a touch point due `now`. The send itself re-checks the
        opt-out (a STOP may arrive in between). None for no such lead."""
        async with self._tx() as conn:
            lead = await self._lock(conn, lead_id)
            if lead is None:
                return None
            if not lead.phone:
                return StaffSms(None, "no_phone")
            opted = await self._fetchrow("sms_opted_out", lead.phone, conn=conn)
            if opted is not None and opted["opted_out"]:
                return StaffSms(None, "opted_out")
            row = await self._fetchrow(
                "queue_staff_sms",
                lead_id,
                lead.phone,
                body,
                staff_email,
                staff_name,
                now,
                conn=conn,
            )
            assert row is not None
            return StaffSms(int(row["id"]), None)
