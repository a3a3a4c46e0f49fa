"""What providers tell us, stored: a customer's SMS (with what its keyword does), Twilio
delivery statuses, SendGrid events, and the e-mail unsubscribe link. Each is one unit of work
here; what a keyword or an event *means* is decided by the conversations service
(leadd/conversations/inbound.py), which hands in the steps to take (`OptOutStep`, `ReplyStep`)
with their reasons; the store only carries them out.

`opt_out_in` is the one opt-out step (record the opt-out, cancel every touch point of that
channel and address that has not passed its send gate), used by every path that opts an
address out: STOP, Twilio's 21610, SendGrid stop events, the unsubscribe link, and a send
the provider refused for good (outreach).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from leadd.store.conversations import replied_in
from leadd.store.core import StoreCore, Tx, affected

# The database refuses this one value (NUL, a lone surrogate, a number out of range).
_BAD_VALUE = (asyncpg.DataError, asyncpg.ProgramLimitExceededError)


@dataclass(frozen=True)
class OptOutStep:
    """An address leaves a channel: the opt-out row every later send's gate reads (the first
    reason stays), and every send to it not yet past its gate cancelled with `cancel_reason`."""

    channel: str  # sms | email
    address: str
    reason: str  # shown to operators: keyword, twilio_21610, bounce, unsubscribe_link...
    cancel_reason: str  # on each cancelled touch point


@dataclass(frozen=True)
class ReplyStep:
    """The message counts as the customer's reply (ConversationStore.customer_replied)."""

    cause: str
    detail: Mapping[str, Any]


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
class EmailEventWrite:
    """An event to store and the opt-out it causes when it is new (None: none)."""

    event: EmailEvent
    opt_out: OptOutStep | None = None


@dataclass(frozen=True)
class EmailEventsStored:
    new: list[str] = field(default_factory=list)  # the kinds of the events new to us
    refused: int = 0  # events holding a value the database refuses (skipped, not the batch)


async def opt_out_in(tx: Tx, step: OptOutStep) -> int:
    """The opt-out step inside `tx`: the opt-out row, then what has not passed the gate
    cancelled (cancel_for_address says why that is race-free). Returns how many."""
    await tx.execute("opt_out", step.channel, step.address, step.reason)
    return affected(
        await tx.execute("cancel_for_address", step.channel, step.address, step.cancel_reason)
    )


class InboundStore(StoreCore):
    async def receive_sms(
        self,
        *,
        phone: str,
        sid: str,
        body: str,
        opt_out: OptOutStep | None = None,
        opt_in: bool = False,
        reply: ReplyStep | None = None,
    ) -> InboundSms:
        """A customer's SMS on the conversation of the phone's newest lead (open ones first),
        stored with what the service decided it does, in one transaction: `opt_out` (STOP),
        `opt_in` (START: the phone's SMS opt-out lifted), `reply` (for a known lead). A message
        we have (Twilio retried) changes nothing: `stored` is False."""
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
            if opt_out is not None:
                await opt_out_in(tx, opt_out)
            if opt_in:
                await tx.execute("opt_in", "sms", phone)
            if reply is not None and lead_id is not None:
                await replied_in(tx, lead_id, cause=reply.cause, detail=reply.detail)
        return InboundSms(True, lead_id)

    async def opt_out(self, step: OptOutStep) -> int:
        """The opt-out step in a transaction of its own; returns how many sends it cancelled."""
        async with self._tx() as tx:
            return await opt_out_in(tx, step)

    async def record_sms_status(
        self, *, sid: str, status: str, rank: int, error: str | None
    ) -> bool:
        """A delivery status; True when the stored status advanced (callbacks arrive late,
        twice or out of order and never move a status back)."""
        return affected(await self._execute("upsert_message_status", sid, status, rank, error)) > 0

    async def store_email_events(self, writes: Sequence[EmailEventWrite]) -> EmailEventsStored:
        """A SendGrid batch in one transaction; each event in a savepoint, so one the
        database refuses is skipped alone. A new event takes its opt-out step, if any."""
        new: list[str] = []
        refused = 0
        async with self._tx() as tx:
            for write in writes:
                try:
                    async with tx.conn.transaction():  # a savepoint: only this event is undone
                        if await _store_email_event(tx, write):
                            new.append(write.event.kind)
                except _BAD_VALUE:
                    refused += 1
        return EmailEventsStored(new, refused)

    async def unsubscribe(self, token: str, *, reason: str, cancel_reason: str) -> uuid.UUID | None:
        """The unsubscribe link's lead, its e-mail opted out (the opt-out step with `reason`
        and `cancel_reason`); None for an unknown token."""
        async with self._tx() as tx:
            lead = await tx.fetchrow("lead_by_unsubscribe_token", token)
            if lead is None:
                return None
            if lead["email"]:
                await opt_out_in(tx, OptOutStep("email", lead["email"], reason, cancel_reason))
            lead_id: uuid.UUID = lead["id"]
            return lead_id


async def _store_email_event(tx: Tx, write: EmailEventWrite) -> bool:
    """True when the event is new, False for a redelivery."""
    e = write.event
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
    if write.opt_out is not None:
        await opt_out_in(tx, write.opt_out)
    return True
