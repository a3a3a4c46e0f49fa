"""The staff inbox's reads and its conversation flags (read marker, owner, paused sequence).

Every read takes the locations the viewer may see (`None`: all of them): a lead of another
location is not found, exactly like a lead that does not exist."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from leadd.store.chat_models import (
    AppointmentRequest,
    Conversation,
    ConversationSummary,
    LeadEvent,
    Message,
    Timeline,
    TouchPointLine,
)
from leadd.store.sqlbase import SqlBase

ALL_CHANNELS = ("sms", "email", "web")


def _locations(locations: Sequence[str] | None) -> list[str] | None:
    return None if locations is None else list(locations)


class InboxQueries(SqlBase):
    async def inbox(
        self,
        *,
        locations: Sequence[str] | None,
        name_pattern: str | None = None,
        phone_pattern: str | None = None,
        limit: int = 100,
    ) -> list[ConversationSummary]:
        """Conversations, unread first. Patterns are LIKE patterns the caller escaped."""
        rows = await self._fetch("inbox", _locations(locations), name_pattern, phone_pattern, limit)
        return [ConversationSummary.from_row(r) for r in rows]

    async def conversation(
        self, *, lead_id: uuid.UUID, locations: Sequence[str] | None
    ) -> Conversation | None:
        row = await self._fetchrow("conversation", lead_id, _locations(locations))
        return Conversation.from_row(row) if row else None

    async def timeline(self, *, lead_id: uuid.UUID, limit: int = 500) -> Timeline:
        """Messages on every channel (oldest first), state changes, automated steps and
        booking requests of one lead. Callers check access with `conversation` first."""
        async with self.pool.acquire() as conn:
            messages = await self._fetch("thread", lead_id, limit, list(ALL_CHANNELS), conn=conn)
            events = await self._fetch("lead_events", lead_id, conn=conn)
            steps = await self._fetch("lead_touch_points", lead_id, conn=conn)
            bookings = await self._fetch("appointment_requests", lead_id, conn=conn)
        return Timeline(
            messages=tuple(Message.from_row(r) for r in reversed(messages)),
            events=tuple(LeadEvent.from_row(r) for r in events),
            touch_points=tuple(TouchPointLine.from_row(r) for r in steps),
            appointments=tuple(AppointmentRequest.from_row(r) for r in bookings),
        )

    async def mark_read(self, *, lead_id: uuid.UUID, up_to: int) -> None:
        """Staff have seen the conversation up to message `up_to` (never moves back)."""
        await self._execute("mark_read", lead_id, up_to)

    async def assign(self, *, lead_id: uuid.UUID, to: str | None) -> None:
        await self._execute("assign", lead_id, to)

    async def pause_sequence(self, *, lead_id: uuid.UUID, by: str, now: dt.datetime) -> int:
        """Stop the lead's scheduled automated steps until resumed; returns how many."""
        row = await self._fetchrow("pause_sequence", lead_id, now, by)
        return int(row["n"]) if row else 0

    async def resume_sequence(self, *, lead_id: uuid.UUID, by: str, now: dt.datetime) -> int:
        """Reschedule the steps a pause stopped that are still ahead of `now`; returns how
        many."""
        row = await self._fetchrow("resume_sequence", lead_id, now, by)
        return int(row["n"]) if row else 0
