"""The staff inbox's part of the store (issue 10): the conversation list and the inbox's own
facts about a conversation (read marker, owner, the customer's page last open). The lead and its
timeline are the ops store's `lead_detail`; pausing, resuming and state changes are the ops
store's too.

Every read takes the locations the viewer may see (`None`: all of them): a lead of another
location is not found, exactly like a lead that does not exist."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from leadd.store.chat_models import ConversationState, ConversationSummary
from leadd.store.core import StoreCore
from leadd.store.models import LeadSearch


def _locations(locations: Sequence[str] | None) -> list[str] | None:
    return None if locations is None else list(locations)


class InboxStore(StoreCore):
    async def inbox(
        self,
        *,
        locations: Sequence[str] | None,
        q: LeadSearch | None = None,
        limit: int = 100,
    ) -> list[ConversationSummary]:
        """Conversations, unread first; `q` matched as the ops lead list matches it."""
        rows = await self._fetch(
            "inbox_list",
            _locations(locations),
            q.phone if q else None,
            q.text if q else None,
            q.digits if q else None,
            limit,
        )
        return [ConversationSummary.from_row(r) for r in rows]

    async def conversation_state(
        self, *, lead_id: uuid.UUID, locations: Sequence[str] | None
    ) -> ConversationState | None:
        row = await self._fetchrow("inbox_conversation_state", lead_id, _locations(locations))
        return ConversationState.from_row(row) if row else None

    async def mark_read(self, *, lead_id: uuid.UUID, up_to: int) -> None:
        """Staff have seen the conversation up to message `up_to` (never moves back)."""
        await self._execute("inbox_mark_read", lead_id, up_to)

    async def assign(self, *, lead_id: uuid.UUID, to: str | None) -> None:
        await self._execute("inbox_assign", lead_id, to)
