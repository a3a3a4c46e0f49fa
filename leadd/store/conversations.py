"""The chat page's part of the store (issue 10): the link's session, the customer's thread and
posts, booking requests, a person's reply shown on the page, and the one step every customer
message takes (an SMS reply or a message from the page): `customer_replied`.

Every unit of work that changes a lead's conversation locks the lead row first (ops_lock_lead,
the lock the ops store, intake and inbound SMS take too), so two writers of one lead (two tabs,
an SMS arriving while the page posts, two daemons) queue instead of racing; state changes are
the store's one transition (intake.advance_in: lifecycle.can_transition, the timeline row).
Queries: leadd/sql/conversations.sql.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from leadd.store.chat_models import Advance, AppointmentRequest, ChatSession
from leadd.store.core import StoreCore, Tx, affected
from leadd.store.intake import advance_in
from leadd.store.models import MessageView

REPLIED = "customer replied"


class ConversationStore(StoreCore):
    # ------------------------------------------------------------------ the chat page

    async def chat_session(self, *, token_hash: bytes) -> ChatSession | None:
        row = await self._fetchrow("chat_session", token_hash)
        return ChatSession.from_row(row) if row else None

    async def touch_seen(self, *, lead_id: uuid.UUID, at: dt.datetime) -> None:
        """The customer's page is open now (loaded, or its live stream still connected)."""
        await self._execute("chat_touch_seen", lead_id, at)

    async def page_closed(self, *, lead_id: uuid.UUID, open_until: dt.datetime) -> None:
        """The page's live stream ended: it counts as open no later than `open_until`."""
        await self._execute("chat_page_closed", lead_id, open_until)

    async def page_seen_at(self, *, lead_id: uuid.UUID) -> dt.datetime | None:
        seen: dt.datetime | None = await self._fetchval("chat_page_seen_at", lead_id)
        return seen

    async def chat_thread(
        self, *, lead_id: uuid.UUID, channels: Sequence[str], limit: int = 200
    ) -> list[MessageView]:
        """The latest `limit` transcript lines on `channels`, oldest first."""
        rows = await self._fetch("chat_thread", lead_id, limit, list(channels))
        return [MessageView.from_row(r) for r in reversed(rows)]

    async def add_customer_message(
        self,
        *,
        lead_id: uuid.UUID,
        body: str,
        now: dt.datetime,
        rate_window_start: dt.datetime,
        rate_limit: int,
        detail: Mapping[str, Any],
    ) -> int | None:
        """A message from the chat page and what a customer's message does to the lead
        (`customer_replied`), in one transaction. None when the link posted `rate_limit` times
        since `rate_window_start` (nothing stored) or the lead is gone."""
        async with self._tx() as tx:
            if not await self._open_for_posts(tx, lead_id, rate_window_start, rate_limit):
                return None
            message_id = await tx.fetchval(
                "chat_insert_web_message", lead_id, "inbound", body, None, now
            )
            await replied_in(tx, lead_id, cause="chat.message", detail=detail)
            return int(message_id)

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
    ) -> int | None:
        """A time the customer asked for (an earlier unconfirmed one is replaced): the lead
        becomes qualified where the lifecycle allows it and its automated steps stop, in one
        transaction. None when rate-limited or the lead is gone."""
        async with self._tx() as tx:
            if not await self._open_for_posts(tx, lead_id, rate_window_start, rate_limit):
                return None
            await tx.execute("chat_replace_appointment_requests", lead_id)
            request_id = await tx.fetchval(
                "chat_insert_appointment_request", lead_id, location_id, slot_start, slot_end, now
            )
            await advance_in(tx, lead_id, target="qualified", cause="chat.appointment_requested",
                             detail={"slot_start": slot_start.isoformat()})  # fmt: skip
            await tx.execute("chat_stop_automation", lead_id, "customer asked for a time")
            return int(request_id)

    async def _open_for_posts(
        self, tx: Tx, lead_id: uuid.UUID, since: dt.datetime, limit: int
    ) -> bool:
        """Lock the lead; whether the link may post now (False too for no such lead)."""
        if await tx.fetchrow("ops_lock_lead", lead_id) is None:
            return False
        return int(await tx.fetchval("chat_recent_posts", lead_id, since)) < limit

    async def appointment_requests(self, *, lead_id: uuid.UUID) -> list[AppointmentRequest]:
        rows = await self._fetch("chat_appointment_requests", lead_id)
        return [AppointmentRequest.from_row(r) for r in rows]

    async def confirm_appointment(
        self, *, lead_id: uuid.UUID, request_id: int, actor: str, now: dt.datetime
    ) -> Advance | None:
        """Staff confirm a requested time: the lead becomes appointment_set where the lifecycle
        allows it, with a timeline row naming the actor. None when no such request waits
        (already confirmed, replaced, another lead's)."""
        async with self._tx() as tx:
            if await tx.fetchrow("ops_lock_lead", lead_id) is None:
                return None
            slot = await tx.fetchrow(
                "chat_confirm_appointment_request", lead_id, request_id, now, actor
            )
            if slot is None:
                return None
            moved = await advance_in(tx, lead_id, target="appointment_set",
                                     cause="inbox.appointment_confirmed",
                                     detail={"request_id": request_id}, actor=actor)  # fmt: skip
            return Advance(moved)

    # ------------------------------------------------------------------ a customer replied

    async def customer_replied(
        self,
        *,
        lead_id: uuid.UUID,
        cause: str,
        detail: Mapping[str, Any],
    ) -> Advance:
        """What a customer's message does, wherever it comes from: the lead is engaged (when
        the lifecycle allows it from where it is) and its automated sequence stops, since a
        person is talking now; a message a person at the shop queued still goes. (An SMS
        takes the same step inside its own unit of work: InboundStore.receive_sms.)"""
        async with self._tx() as own:
            return await replied_in(own, lead_id, cause=cause, detail=detail)

    # ------------------------------------------------------------------ staff on the page

    async def add_staff_web_message(
        self, *, lead_id: uuid.UUID, body: str, author: str, now: dt.datetime
    ) -> int | None:
        """A person's reply shown on the customer's open page (not sent anywhere); None for no
        such lead."""
        async with self._tx() as tx:
            if await tx.fetchrow("ops_lock_lead", lead_id) is None:
                return None
            message_id = await tx.fetchval(
                "chat_insert_web_message", lead_id, "outbound", body, author, now
            )
            return int(message_id)


async def replied_in(
    tx: Tx, lead_id: uuid.UUID, *, cause: str, detail: Mapping[str, Any]
) -> Advance:
    moved = await advance_in(tx, lead_id, target="engaged", cause=cause, detail=detail)
    stopped = affected(await tx.execute("chat_stop_automation", lead_id, REPLIED))
    return Advance(moved, stopped)
