"""Messages: what a customer's message does (the one rule, shared by SMS replies and the chat
page), posting from the chat page, and a staff reply (to the open page, else by SMS)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from leadd import leads
from leadd.config import StaffUser
from leadd.conversations.deps import Deps
from leadd.logs import get_logger
from leadd.store.chat_models import ChatSession, LeadMove, Move
from leadd.store.conversations import ConversationStore
from leadd.store.sqlbase import Conn

log = get_logger(__name__)

MAX_CUSTOMER_MESSAGE = 1000  # characters
MAX_STAFF_MESSAGE = 1600  # Twilio's limit for one message body
POSTS_PER_MINUTE = 10  # per chat link: messages and booking requests together
# The customer's page counts as open this long after it was last seen (loaded, or its live
# stream still connected: the stream refreshes it every LIVE_SEEN_EVERY seconds).
PAGE_OPEN_FOR = dt.timedelta(minutes=3)
ENGAGEABLE = tuple(s for s in leads.STATES if leads.can_transition(s, "engaged"))


class BadMessage(ValueError):
    """A message that is empty, too long or not text; the reason is for the writer."""


class RateLimited(Exception):
    """Too many posts from one chat link in the last minute."""


def clean_message(text: str, limit: int) -> str:
    """The text to store: line ends normalised, trimmed, checked for size and content."""
    body = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not body:
        raise BadMessage("Write a message first.")
    if len(body) > limit:
        raise BadMessage(f"Messages can be up to {limit} characters; this one has {len(body)}.")
    if "\x00" in body or any(0xD800 <= ord(c) <= 0xDFFF for c in body):
        raise BadMessage("The message contains characters that cannot be stored.")
    return body


def reply_move(cause: str, detail: Mapping[str, Any]) -> LeadMove:
    """What a customer's message does, wherever it comes from: the lead is engaged (when the
    lifecycle allows it from where it is), and its automated sequence stops, since a person is
    talking now. A reply a person at the shop has queued still goes."""
    return LeadMove(
        target="engaged",
        allowed_from=ENGAGEABLE,
        cause=cause,
        detail=detail,
        stop_automation="customer replied",
    )


async def customer_replied(
    store: ConversationStore,
    lead_id: uuid.UUID,
    *,
    cause: str,
    detail: Mapping[str, Any],
    conn: Conn | None = None,
) -> Move | None:
    """Apply `reply_move` to a lead. `conn`: a caller's transaction that holds the lead's
    row lock (the inbound SMS webhook); without it the store takes the lock."""
    move = await store.move_lead(lead_id=lead_id, move=reply_move(cause, detail), conn=conn)
    if move is not None and move.moved:
        log.info(
            "lead.state",
            lead_id=str(lead_id),
            from_state=move.from_state,
            to_state="engaged",
            cause=cause,
        )
    return move


async def post_customer_message(deps: Deps, session: ChatSession, text: str) -> int:
    """A message written on the chat page; returns its id. Raises BadMessage or
    RateLimited (nothing stored)."""
    body = clean_message(text, MAX_CUSTOMER_MESSAGE)
    now = deps.clock()
    message_id = await deps.store.add_customer_message(
        lead_id=session.lead_id,
        body=body,
        now=now,
        rate_window_start=now - dt.timedelta(minutes=1),
        rate_limit=POSTS_PER_MINUTE,
        move=reply_move("chat.message", {"channel": "web"}),
    )
    if message_id is None:
        raise RateLimited
    await deps.store.touch_seen(lead_id=session.lead_id, at=now)
    log.info("chat.customer_message", lead_id=str(session.lead_id), message_id=message_id)
    return message_id


@dataclass(frozen=True)
class StaffReply:
    via: str | None  # "web" | "sms"; None when refused
    refused: str | None = None  # why nothing was sent, for the person who wrote it


REFUSALS = {
    "opted_out": "Not sent: this customer opted out of text messages (STOP), and their chat "
    "page is not open. They can still reach you; a text will go once they reply START.",
    "no_phone": "Not sent: there is no phone number for this customer.",
}


async def staff_reply(deps: Deps, user: StaffUser, lead_id: uuid.UUID, text: str) -> StaffReply:
    """A person's reply: shown on the customer's page when it is open (seen in the last
    PAGE_OPEN_FOR), otherwise sent by SMS through the touch-point loop's gate; never to an
    opted-out number. Raises BadMessage; LookupError for no such lead."""
    body = clean_message(text, MAX_STAFF_MESSAGE)
    now = deps.clock()
    store = deps.store
    seen = await store.page_seen_at(lead_id=lead_id)
    name = user.name.split()[0]  # customers see the first name
    if seen is not None and now - seen <= PAGE_OPEN_FOR:
        msg = await store.add_staff_web_message(
            lead_id=lead_id, body=body, staff_email=user.email, staff_name=name, now=now
        )
        if msg is None:
            raise LookupError(lead_id)
        log.info("chat.staff_reply", lead_id=str(lead_id), via="web", message_id=msg)
        return StaffReply("web")
    sms = await store.queue_staff_sms(
        lead_id=lead_id, body=body, staff_email=user.email, staff_name=name, now=now
    )
    if sms is None:
        raise LookupError(lead_id)
    if sms.refused is not None:
        log.info("chat.staff_reply_refused", lead_id=str(lead_id), reason=sms.refused)
        return StaffReply(None, REFUSALS[sms.refused])
    deps.wake()
    log.info("chat.staff_reply", lead_id=str(lead_id), via="sms", message_id=sms.message_id)
    return StaffReply("sms")
