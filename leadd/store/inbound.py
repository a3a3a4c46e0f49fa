"""What providers tell us, stored: a customer's SMS (with what its keyword does), Twilio
delivery statuses, SendGrid events, and the e-mail unsubscribe link. Each is one unit of work
here; what a keyword or an event *means* is decided by the conversations service.

`opt_out_in` is the one opt-out step (record the opt-out, cancel every touch point of that
channel and address that has not passed its send gate), used by every path that opts an
address out: STOP, Twilio's 21610, SendGrid stop events, the unsubscribe link, and a send
the provider refused for good (outreach).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from leadd.store.conversations import replied_in
from leadd.store.core import StoreCore, Tx

# The database refuses this one value (NUL, a lone surrogate, a number out of range).
_BAD_VALUE = (asyncpg.DataError, asyncpg.ProgramLimitExceededError)


@dataclass(frozen=True)
class InboundSms:
    stored: bool  # False: a message we already have (Twilio retried)
    lead_id: uuid.UUID | None  # the conversation it belongs to, if any


@dataclass(frozen=True)
class EmailEvent:
    """One SendGrid event in the types and sizes we store."""

    event_id: str
    kind: str
    email: str | None
    lead_id: uuid.UUID | None
    touch_point_id: int | None
    message_id: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class EmailEventsStored:
    new: list[str] = field(default_factory=list)  # the kinds of the events new to us
    refused: int = 0  # events holding a value the database refuses (skipped, not the batch)


async def opt_out_in(
    tx: Tx, channel: str, address: str, *, reason: str, cancel_reason: str
) -> None:
    """Inside `tx`: opt `address` out of `channel` and cancel what has not passed the gate."""
    await tx.execute("opt_out", channel, address, reason)
    await tx.execute("cancel_for_address", channel, address, cancel_reason)


class InboundStore(StoreCore):
    async def receive_sms(
        self, *, phone: str, sid: str, body: str, opt_out: bool, opt_in: bool, reply: bool
    ) -> InboundSms:
        """A customer's SMS, stored with what it does, in one transaction: `opt_out` (STOP),
        `opt_in` (START), `reply` (the lead is engaged and its automated sequence stops)."""
        async with self._tx() as tx:
            lead = await tx.fetchrow("latest_lead_for_phone", phone)
            lead_id: uuid.UUID | None = lead["id"] if lead else None
            if lead_id is not None:
                # Lock the lead before the chat message's foreign key takes KEY SHARE on it:
                # two messages of one phone arriving together would otherwise deadlock.
                await tx.fetchrow("lock_lead", lead_id)
            stored = await tx.fetchval(
                "insert_chat_message", lead_id, "inbound", "sms", phone, body, sid
            )
            if stored is None:
                return InboundSms(False, lead_id)
            if opt_out:
                await opt_out_in(
                    tx, "sms", phone, reason="keyword", cancel_reason="opted out (STOP)"
                )
            if opt_in:
                await tx.execute("opt_in", "sms", phone)
            if reply and lead_id is not None:
                await replied_in(tx, lead_id, cause="sms.reply", detail={"message_sid": sid})
        return InboundSms(True, lead_id)

    async def opt_out(self, channel: str, address: str, *, reason: str, cancel_reason: str) -> None:
        """Opt an address out of a channel and cancel its unsent touch points, together."""
        async with self._tx() as tx:
            await opt_out_in(tx, channel, address, reason=reason, cancel_reason=cancel_reason)

    async def record_sms_status(
        self, *, sid: str, status: str, rank: int, error: str | None
    ) -> str:
        """A delivery status; the command tag ("INSERT 0 1" only when the status advanced:
        callbacks arrive late, twice or out of order and never move a status back)."""
        return await self._execute("upsert_message_status", sid, status, rank, error)

    async def store_email_events(
        self, events: Sequence[EmailEvent], *, stop_kinds: frozenset[str]
    ) -> EmailEventsStored:
        """A SendGrid batch in one transaction; each event in a savepoint, so one the
        database refuses is skipped alone. A new event of `stop_kinds` opts its address out."""
        new: list[str] = []
        refused = 0
        async with self._tx() as tx:
            for e in events:
                try:
                    async with tx.conn.transaction():  # a savepoint: only this event is undone
                        if await _store_email_event(tx, e, stop_kinds):
                            new.append(e.kind)
                except _BAD_VALUE:
                    refused += 1
        return EmailEventsStored(new, refused)

    async def unsubscribe(self, token: str, *, reason: str) -> uuid.UUID | None:
        """The unsubscribe link's lead, its e-mail opted out; None for an unknown token."""
        async with self._tx() as tx:
            lead = await tx.fetchrow("lead_by_unsubscribe_token", token)
            if lead is None:
                return None
            if lead["email"]:
                await opt_out_in(
                    tx, "email", lead["email"], reason=reason, cancel_reason="unsubscribed"
                )
            lead_id: uuid.UUID = lead["id"]
            return lead_id


async def _store_email_event(tx: Tx, e: EmailEvent, stop_kinds: frozenset[str]) -> bool:
    """True when the event is new, False for a redelivery."""
    inserted = await tx.fetchval(
        "insert_email_event",
        e.event_id,
        e.kind,
        e.email,
        e.lead_id,
        e.touch_point_id,
        e.message_id,
        e.payload,
    )
    if inserted is None:
        return False  # duplicate delivery of an event we have
    if e.kind in stop_kinds and e.email:
        await opt_out_in(
            tx, "email", e.email.strip(), reason=e.kind, cancel_reason=f"e-mail {e.kind}"
        )
    return True
