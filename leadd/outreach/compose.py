"""Composing a message: the step's templates (Jinja, sandboxed, checked when the config loads:
leadd.templates) rendered against the lead, its location and the links, and for e-mail the
footer and headers the law and the mailbox providers require.

No I/O (a chat link this daemon cannot derive is left out with a log line): the clock's
reading and the location's opening hours are passed in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from leadd import chatlinks, compliance, sequences, templates
from leadd.config import Config, Location, SequenceStep
from leadd.store.outreach_models import TouchPoint

# What rendering a step can raise for one lead's data (the template itself was checked when
# the configuration loaded): recorded on that touch point, never a crash of the loop.
RENDER_ERRORS = (templates.TemplateError, KeyError, ValueError, TypeError)


@dataclass(frozen=True)
class Message:
    subject: str | None  # e-mail only
    body: str


def render(
    cfg: Config,
    tp: TouchPoint,
    step: SequenceStep,
    location: Location,
    hours: compliance.BusinessHours,
    now: dt.datetime,
) -> Message:
    """The step's body (and e-mail subject) for this lead. Raises one of RENDER_ERRORS."""
    context = build_context(cfg, tp, location, hours, now)
    body = sequences.compiled(step.template).render(context).strip()
    subject = sequences.compiled(step.subject).render(context).strip() if step.subject else None
    return Message(subject, body)


def build_context(
    cfg: Config,
    tp: TouchPoint,
    location: Location,
    hours: compliance.BusinessHours,
    now: dt.datetime,
) -> dict[str, Any]:
    # chat (issue 10): the link token is derived again; only its hash is stored
    token = chatlinks.link_token(cfg, tp.lead_id, tp.chat_token_hash)
    return templates.build_context(
        customer={"first_name": tp.first_name, "last_name": tp.last_name},
        vehicle=tp.vehicle or {},
        services=tp.services or [],
        location={
            "name": location.name,
            "phone": location.phone,
            "address": location.address,
            "hours_today": hours.describe_day(now, location.timezone),
        },
        tenant_name=cfg.tenant.name,
        order_number=tp.order_number,
        chat_link=f"{cfg.chat.base_url}/{token}" if cfg.chat.base_url and token else None,
        unsubscribe_link=unsubscribe_url(cfg, tp),
    )


def sender(cfg: Config, step: SequenceStep, location: Location) -> str:
    """The From of this step: the location's SMS number (or its phone), or the e-mail sender."""
    if step.channel == "sms":
        return location.sms_from or location.phone or ""
    return cfg.sendgrid.from_email


def status_callback(cfg: Config) -> str:
    """Where Twilio posts the delivery status of an SMS we send."""
    return f"{cfg.http.public_url}/webhooks/twilio/status"


def recipient_name(tp: TouchPoint) -> str | None:
    return " ".join(x for x in (tp.first_name, tp.last_name) if x) or None


def custom_args(tp: TouchPoint) -> dict[str, str]:
    """Carried by SendGrid into its events, which dedupe on the touch point id."""
    return {"lead_id": str(tp.lead_id), "touch_point_id": str(tp.id)}


def unsubscribe_url(cfg: Config, tp: TouchPoint) -> str | None:
    token = tp.unsubscribe_token
    return f"{cfg.http.public_url}/unsubscribe/{token}" if token else None


def email_text(cfg: Config, body: str, location: Location, tp: TouchPoint) -> str:
    """CAN-SPAM: every e-mail carries the physical address and a working opt-out."""
    link = unsubscribe_url(cfg, tp)
    lines = [body, "", "--", location.name]
    if location.address:
        lines.append(location.address)
    if link:
        lines.append(f"Unsubscribe: {link}")
    return "\n".join(lines)


def unsubscribe_headers(cfg: Config, tp: TouchPoint) -> dict[str, str] | None:
    link = unsubscribe_url(cfg, tp)
    if not link:
        return None
    # RFC 8058 one-click unsubscribe (Gmail/Yahoo bulk-sender rules).
    return {
        "List-Unsubscribe": f"<{link}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
