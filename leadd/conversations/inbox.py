"""The staff inbox: the conversation list, one conversation, and what staff can do to a lead.

Every function takes the signed-in StaffUser and only reaches leads of the locations that
person may see: another location's lead is "not found", as a lead that does not exist."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from leadd import leads
from leadd.config import StaffUser
from leadd.conversations import booking
from leadd.conversations.deps import Deps
from leadd.logs import get_logger
from leadd.store.chat_models import Conversation, ConversationSummary, LeadMove, Move, Timeline

log = get_logger(__name__)

STAFF_STATES = ("qualified", "appointment_set", "completed", "lost")
MAX_REASON = 500
MAX_QUERY = 100


class ActionError(ValueError):
    """An action the request asked for wrongly (unknown state, missing reason)."""


@dataclass(frozen=True)
class ConversationView:
    conversation: Conversation
    timeline: Timeline


def search_patterns(q: str) -> tuple[str | None, str | None]:
    """(name ILIKE pattern, phone LIKE pattern) for a search box value: the phone pattern
    from its digits when it has at least 3 (the stored form is E.164)."""
    q = q.strip()[:MAX_QUERY]
    if not q:
        return None, None
    escaped = re.sub(r"([\\%_])", r"\\\1", q)
    digits = re.sub(r"\D", "", q)
    return f"%{escaped}%", (f"%{digits}%" if len(digits) >= 3 else None)


async def list_conversations(
    deps: Deps, user: StaffUser, q: str = "", location: str = ""
) -> list[ConversationSummary]:
    """The list, of one location when `location` names one the person may see."""
    name, phone = search_patterns(q)
    locations = (location,) if location and user.sees(location) else user.visible
    return await deps.store.inbox(locations=locations, name_pattern=name, phone_pattern=phone)


async def find(deps: Deps, user: StaffUser, lead_id: uuid.UUID) -> Conversation | None:
    return await deps.store.conversation(lead_id=lead_id, locations=user.visible)


async def open_conversation(
    deps: Deps, user: StaffUser, lead_id: uuid.UUID, *, mark_read: bool = True
) -> ConversationView | None:
    """A conversation with its timeline; reading it marks the customer's messages read."""
    conversation = await find(deps, user, lead_id)
    if conversation is None:
        return None
    timeline = await deps.store.timeline(lead_id=lead_id)
    if mark_read and timeline.messages:
        last = max(m.id for m in timeline.messages)
        if last > conversation.read_up_to:
            await deps.store.mark_read(lead_id=lead_id, up_to=last)
    return ConversationView(conversation, timeline)


async def set_state(
    deps: Deps, user: StaffUser, lead_id: uuid.UUID, target: str, reason: str
) -> Move | None:
    """Move a lead as the lifecycle allows; `lost` needs a reason. None: no such lead (for
    this viewer). A Move with moved=False names the state that forbade it."""
    if target not in STAFF_STATES:
        raise ActionError(f"state must be one of {', '.join(STAFF_STATES)}")
    reason = reason.strip()
    if target == "lost" and not reason:
        raise ActionError("say why the lead is lost")
    if len(reason) > MAX_REASON or "\x00" in reason:
        raise ActionError(f"the reason can be up to {MAX_REASON} characters")
    if await find(deps, user, lead_id) is None:
        return None
    move = LeadMove(
        target=target,
        allowed_from=tuple(s for s in leads.STATES if leads.can_transition(s, target)),
        cause="staff.state",
        detail={"by": user.email, **({"reason": reason} if reason else {})},
        stop_automation=f"lead {target}" if target in leads.TERMINAL else None,
    )
    result = await deps.store.move_lead(lead_id=lead_id, move=move)
    if result is not None and result.moved:
        log.info(
            "lead.state",
            lead_id=str(lead_id),
            from_state=result.from_state,
            to_state=target,
            cause="staff.state",
        )
    return result


async def confirm_appointment(
    deps: Deps, user: StaffUser, lead_id: uuid.UUID, request_id: int
) -> Move | None:
    if await find(deps, user, lead_id) is None:
        return None
    return await booking.confirm_appointment(deps, user, lead_id, request_id)


async def pause(deps: Deps, user: StaffUser, lead_id: uuid.UUID) -> bool:
    if await find(deps, user, lead_id) is None:
        return False
    n = await deps.store.pause_sequence(lead_id=lead_id, by=user.email, now=deps.clock())
    log.info("lead.sequence_paused", lead_id=str(lead_id), steps=n)
    return True


async def resume(deps: Deps, user: StaffUser, lead_id: uuid.UUID) -> bool:
    if await find(deps, user, lead_id) is None:
        return False
    n = await deps.store.resume_sequence(lead_id=lead_id, by=user.email, now=deps.clock())
    if n:
        deps.wake()
    log.info("lead.sequence_resumed", lead_id=str(lead_id), steps=n)
    return True


async def assign_to_me(deps: Deps, user: StaffUser, lead_id: uuid.UUID) -> bool:
    if await find(deps, user, lead_id) is None:
        return False
    await deps.store.assign(lead_id=lead_id, to=user.email)
    return True
