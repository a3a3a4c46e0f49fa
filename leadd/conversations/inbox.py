"""The staff inbox: the conversation list and one conversation as staff see it.

Every function takes the signed-in StaffUser and only reaches leads of the locations that
person may see: another location's lead is "not found", as a lead that does not exist. The
lead and its timeline are the ops store's `lead_detail`; pausing, resuming, moving a lead and
queueing an SMS are the ops store's and use cases' (the inbox handlers call them once `find`
has said the person may see the lead)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from leadd.config import StaffUser
from leadd.conversations.thread import Line, lines, names
from leadd.logs import get_logger
from leadd.runtime import Runtime
from leadd.store.chat_models import (
    AppointmentRequest,
    ConversationState,
    ConversationSummary,
    ServiceLine,
    full_name,
    vehicle_text,
)
from leadd.store.models import LeadDetail, LeadSearch, TimelineEvent, TouchPointView
from leadd.store.ops import CAUSE_PAUSED

log = get_logger(__name__)

MAX_QUERY = 100
# A state change needs a reason on the ops timeline; the inbox asks for one only for `lost`.
NO_REASON = "set in the inbox"


class ActionError(ValueError):
    """An action the request asked for wrongly (a lost lead without a reason)."""


@dataclass(frozen=True)
class Conversation:
    """One lead as staff see it: the ops lead detail, the inbox's own facts, and the lines."""

    lead: LeadDetail
    inbox: ConversationState
    messages: tuple[Line, ...]  # the transcript, and staff SMS not (yet) sent
    steps: tuple[TouchPointView, ...]  # the automated sequence
    appointments: tuple[AppointmentRequest, ...]
    names: Mapping[str, str]  # actor -> how the inbox names them

    @property
    def lead_id(self) -> uuid.UUID:
        return self.lead.id

    @property
    def name(self) -> str:
        return full_name(self.lead.first_name, self.lead.last_name)

    @property
    def vehicle(self) -> str | None:
        return vehicle_text(self.lead.vehicle)

    @property
    def services(self) -> tuple[ServiceLine, ...]:
        return ServiceLine.list_from(self.lead.services)

    @property
    def events(self) -> tuple[TimelineEvent, ...]:
        return self.lead.events

    @property
    def sms_opted_out(self) -> bool:
        return any(o.channel == "sms" for o in self.lead.opt_outs)

    @property
    def paused_by(self) -> str | None:
        """Who paused the sequence (the latest pause on the timeline), while it is paused."""
        if self.lead.paused_at is None:
            return None
        pauses = [e.actor for e in self.lead.events if e.cause == CAUSE_PAUSED]
        return self.names.get(pauses[-1] or "", pauses[-1]) if pauses else None


def search(q: str, region: str) -> LeadSearch | None:
    """The search box's value as the ops lead list searches (LeadSearch.of); characters
    PostgreSQL cannot store in text are dropped (they match nothing anyway)."""
    text = "".join(c for c in q[:MAX_QUERY] if c != "\x00" and not 0xD800 <= ord(c) <= 0xDFFF)
    text = text.strip()
    return LeadSearch.of(text, region) if text else None


async def list_conversations(
    rt: Runtime, user: StaffUser, q: str = "", location: str = ""
) -> list[ConversationSummary]:
    """The list, of one location when `location` names one the person may see."""
    locations = (location,) if location and user.sees(location) else user.visible
    return await rt.store.inbox(locations=locations, q=search(q, rt.config.leads.default_region))


async def find(rt: Runtime, user: StaffUser, lead_id: uuid.UUID) -> ConversationState | None:
    """The lead's inbox facts when the person may see it; None otherwise (or no such lead)."""
    return await rt.store.conversation_state(lead_id=lead_id, locations=user.visible)


async def open_conversation(
    rt: Runtime, user: StaffUser, lead_id: uuid.UUID, *, mark_read: bool = True
) -> Conversation | None:
    """A conversation with its timeline; reading it marks the customer's messages read."""
    state = await find(rt, user, lead_id)
    if state is None:
        return None
    detail = await rt.store.lead_detail(lead_id)
    if detail is None:
        return None
    appointments = await rt.store.appointment_requests(lead_id=lead_id)
    if mark_read and detail.messages:
        last = max(m.id for m in detail.messages)
        if last > state.read_up_to:
            await rt.store.mark_read(lead_id=lead_id, up_to=last)
    actors = [e.actor for e in detail.events] + [a.confirmed_by for a in appointments]
    return Conversation(
        lead=detail,
        inbox=state,
        messages=lines(rt.config, detail.messages, detail.touch_points),
        steps=tuple(t for t in detail.touch_points if t.kind != "staff"),
        appointments=tuple(appointments),
        names=names(rt.config, actors),
    )


def state_reason(target: str, reason: str) -> str:
    """The reason to record for a state change made in the inbox: required for `lost`."""
    reason = reason.strip()
    if target == "lost" and not reason:
        raise ActionError("say why the lead is lost")
    return reason or NO_REASON


async def assign_to_me(rt: Runtime, user: StaffUser, lead_id: uuid.UUID) -> bool:
    if await find(rt, user, lead_id) is None:
        return False
    await rt.store.assign(lead_id=lead_id, to=user.email)
    log.info("inbox.assigned", lead_id=str(lead_id))
    return True
