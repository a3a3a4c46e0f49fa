"""Messages: posting from the chat page (what a customer's message does is one store step,
shared with SMS replies: leadd.conversations.inbound), and a staff reply (to the open page,
else by SMS: the ops staff-message path, a `kind='staff'` touch point sent by the send loop
through the gate)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from leadd.config import StaffUser
from leadd.conversations.thread import actor
from leadd.logs import get_logger
from leadd.runtime import Runtime
from leadd.store.chat_models import ChatSession

log = get_logger(__name__)

MAX_CUSTOMER_MESSAGE = 1000  # characters
MAX_STAFF_MESSAGE = 1600  # Twilio's limit for one message body (as the ops API's MAX_SMS_BODY)
POSTS_PER_MINUTE = 10  # per chat link: messages and booking requests together
# The customer's page counts as open this long after it was last seen (loaded, or its live
# stream still connected: the stream refreshes it on every keep-alive).
PAGE_OPEN_FOR = dt.timedelta(minutes=3)


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


async def post_customer_message(rt: Runtime, session: ChatSession, text: str) -> int:
    """A message written on the chat page; returns its id. Raises BadMessage or
    RateLimited (nothing stored)."""
    body = clean_message(text, MAX_CUSTOMER_MESSAGE)
    now = rt.clock()
    message_id = await rt.store.add_customer_message(
        lead_id=session.lead_id,
        body=body,
        now=now,
        rate_window_start=now - dt.timedelta(minutes=1),
        rate_limit=POSTS_PER_MINUTE,
        detail={"channel": "web"},
    )
    if message_id is None:
        raise RateLimited
    await rt.store.touch_seen(lead_id=session.lead_id, at=now)
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


def page_open(seen_at: dt.datetime | None, now: dt.datetime) -> bool:
    return seen_at is not None and now - seen_at <= PAGE_OPEN_FOR


async def staff_reply(rt: Runtime, user: StaffUser, lead_id: uuid.UUID, text: str) -> StaffReply:
    """A person's reply: shown on the customer's page when it is open (seen in the last
    PAGE_OPEN_FOR), otherwise an SMS queued as every staff message is (OpsStore.
    add_staff_message: refused for an opted-out or missing number) and sent by the send loop
    through the gate. Raises BadMessage; LookupError for no such lead. The caller has checked
    the person may see the lead."""
    body = clean_message(text, MAX_STAFF_MESSAGE)
    now = rt.clock()
    store = rt.store
    author = actor(user.email)
    if page_open(await store.page_seen_at(lead_id=lead_id), now):
        msg = await store.add_staff_web_message(lead_id=lead_id, body=body, author=author, now=now)
        if msg is None:
            raise LookupError(lead_id)
        log.info("chat.staff_reply", lead_id=str(lead_id), via="web", message_id=msg)
        return StaffReply("web")
    queued = await store.add_staff_message(lead_id, body=body, author=author, now=now)
    if queued is None:
        raise LookupError(lead_id)
    if queued.refused is not None:
        log.info("chat.staff_reply_refused", lead_id=str(lead_id), reason=queued.refused)
        return StaffReply(None, REFUSALS[queued.refused])
    rt.wake()
    log.info(
        "chat.staff_reply", lead_id=str(lead_id), via="sms", touch_point_id=queued.touch_point_id
    )
    return StaffReply("sms")
