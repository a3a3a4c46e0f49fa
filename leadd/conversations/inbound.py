"""What providers tell us about a conversation, decided in one place: a customer's SMS (a reply,
or STOP/START/HELP), a delivery status, a SendGrid event, the e-mail unsubscribe link. The
HTTP handlers (leadd.web.twilio, .sendgrid, .unsubscribe) verify and parse; this decides,
down to the reasons recorded; the store (InboundStore) carries out the steps decided here
(OptOutStep, ReplyStep) as one unit of work.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from leadd import consent, metrics
from leadd.config import Config
from leadd.consent import Keyword
from leadd.logs import get_logger
from leadd.runtime import Runtime
from leadd.store.inbound import (
    EmailEvent,
    EmailEventsStored,
    EmailEventWrite,
    OptOutStep,
    ReplyStep,
)

log = get_logger(__name__)

# Delivery status rank: callbacks arrive out of order; a status never moves backwards.
STATUS_RANK = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "read": 5,
    "canceled": 4,
}
# Events after which we must not e-mail the address again.
EMAIL_STOP_EVENTS = frozenset({"bounce", "spamreport", "unsubscribe", "group_unsubscribe"})
# Twilio: the recipient has replied STOP to this sender (carrier-level opt-out).
UNSUBSCRIBED_RECIPIENT = "21610"


@dataclass(frozen=True)
class SmsOutcome:
    keyword: Keyword | None
    lead_id: uuid.UUID | None
    reply: str | None  # the text to answer with (HELP), else nothing


async def receive_sms(rt: Runtime, *, phone: str, sid: str, body: str) -> SmsOutcome:
    """A customer's SMS: STOP opts the phone out (and cancels what has not passed the gate),
    START opts it back in, HELP is answered (once: not on a redelivery); any other text, and
    "Yes" (an opt-in keyword and the usual answer to "want us to book it?"), is a reply: the
    lead is engaged and its automated follow-ups stop (a queued staff message still goes)."""
    keyword = consent.classify_keyword(body)
    stop = OptOutStep("sms", phone, reason="keyword", cancel_reason="opted out (STOP)")
    # The same step as a message on the chat page (the store's replied_in).
    reply = ReplyStep(cause="sms.reply", detail={"message_sid": sid})
    stored = await rt.store.receive_sms(
        phone=phone,
        sid=sid,
        body=body,
        opt_out=stop if keyword == "opt_out" else None,
        opt_in=keyword == "opt_in",
        reply=reply if keyword in (None, "opt_in") else None,
    )
    lead = str(stored.lead_id) if stored.lead_id else None
    log.info("sms.inbound", phone=phone, keyword=keyword, lead_id=lead, new=stored.stored)
    # A redelivery (Twilio retried) was answered the first time: HELP is not answered twice.
    answer = help_text(rt.config) if keyword == "help" and stored.stored else None
    return SmsOutcome(keyword, stored.lead_id, answer)


def help_text(cfg: Config) -> str:
    if cfg.compliance.help_text:
        return str(cfg.compliance.help_text)
    loc = cfg.locations[0]
    contact = f" or call {loc.phone}" if loc.phone else ""
    return (
        f"{cfg.tenant.name}: service updates about your estimate request. "
        f"Up to {cfg.compliance.max_sms_per_day} msgs/day. Msg&data rates may apply. "
        f"Reply STOP to opt out, HELP for help{contact}."
    )


async def sms_status(
    rt: Runtime, *, sid: str, status: str, error: str | None, recipient: str
) -> None:
    """A delivery status (`status` one of STATUS_RANK). Error 21610 means the recipient
    opted out at the carrier: the number is opted out here too."""
    advanced = await rt.store.record_sms_status(
        sid=sid, status=status, rank=STATUS_RANK[status], error=error
    )
    metrics.count_sms_status(status, advanced)
    if error == UNSUBSCRIBED_RECIPIENT:
        await rt.store.opt_out(
            OptOutStep("sms", recipient, reason="twilio_21610", cancel_reason="opted out (21610)")
        )


async def email_events(rt: Runtime, events: Sequence[EmailEvent]) -> EmailEventsStored:
    """A SendGrid batch: each new event stored and counted; a bounce, spam report or
    unsubscribe opts its address out of e-mail."""
    stored = await rt.store.store_email_events([EmailEventWrite(e, _opt_out(e)) for e in events])
    for kind in stored.new:  # counted once committed
        metrics.count_email_event(kind)
    return stored


def _opt_out(e: EmailEvent) -> OptOutStep | None:
    """What a new SendGrid event does to its address: a stop event opts it out of e-mail."""
    if e.kind not in EMAIL_STOP_EVENTS or not e.email:
        return None
    return OptOutStep("email", e.email.strip(), reason=e.kind, cancel_reason=f"e-mail {e.kind}")


async def unsubscribe(rt: Runtime, token: str) -> bool:
    """The unsubscribe link: its lead's e-mail is opted out of all e-mail. False: unknown."""
    lead_id = await rt.store.unsubscribe(
        token, reason="unsubscribe_link", cancel_reason="unsubscribed"
    )
    if lead_id is None:
        return False
    log.info("email.unsubscribed", lead_id=str(lead_id))
    return True
