"""A conversation as people read it: one line per message, oldest first, with who wrote it.

A staff SMS is a touch point (kind 'staff', the ops path) until it is sent; then its transcript
line (chat_messages, written by record_sent with the author) stands for it. Until then, or when
it was never sent (opted out, failed), the inbox shows the touch point itself: one line either
way."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from leadd.config import Config
from leadd.store.chat_models import message_kind
from leadd.store.models import MessageView, TouchPointView

STAFF_PREFIX = "staff:"  # the actor and author of what an inbox user does: staff:<e-mail>
PENDING = frozenset({"scheduled", "sending"})


@dataclass(frozen=True)
class Line:
    key: str  # the element id: m<message id>, or t<touch point id> for an unsent staff SMS
    kind: str  # customer | staff | automation
    author: str | None  # staff:<e-mail>, an API token's name, cli:<user>; None otherwise
    name: str | None  # the staff member's name (first name for the customer), when known
    body: str
    channel: str  # sms | email | web
    at: dt.datetime
    # A staff SMS: 'sending', 'not_sent' (with `reason`), or the provider's delivery status.
    status: str | None = None
    reason: str | None = None


def actor(email: str) -> str:
    """How an inbox user is named as an actor and author (lead_events.actor, chat_messages.
    author, touch_points.author), beside API token names and cli:<user>."""
    return f"{STAFF_PREFIX}{email}"


def staff_name(config: Config, author: str | None, *, first: bool = False) -> str | None:
    """The name of the inbox user an author names (None: not one, or no longer configured)."""
    if not author or not author.startswith(STAFF_PREFIX):
        return None
    user = config.staff_user(author.removeprefix(STAFF_PREFIX))
    if user is None:
        return None
    return user.name.split()[0] if first else user.name


def who(config: Config, author: str | None) -> str | None:
    """An actor as the inbox shows it: a staff member's name, else the actor as recorded."""
    return staff_name(config, author) or author


def lines(
    config: Config,
    messages: Iterable[MessageView],
    touch_points: Iterable[TouchPointView] = (),
    *,
    first_names: bool = False,
) -> tuple[Line, ...]:
    """Messages and the staff SMS not (yet) sent, oldest first."""
    out = [
        Line(
            key=f"m{m.id}",
            kind=message_kind(m.direction, m.author),
            author=m.author,
            name=staff_name(config, m.author, first=first_names),
            body=m.body,
            channel=m.channel,
            at=m.created_at,
            status=m.delivery_status if m.author else None,
        )
        for m in messages
    ]
    for t in touch_points:
        if t.kind != "staff" or t.state == "sent" or t.body is None:
            continue
        pending = t.state in PENDING
        out.append(
            Line(
                key=f"t{t.id}",
                kind="staff",
                author=t.author,
                name=staff_name(config, t.author, first=first_names),
                body=t.body,
                channel=t.channel,
                at=t.due_at if pending else t.updated_at,
                status="sending" if pending else "not_sent",
                reason=None if pending else (t.last_error or t.state),
            )
        )
    return tuple(sorted(out, key=lambda line: line.at))


def names(config: Config, authors: Iterable[str | None]) -> Mapping[str, str]:
    """Display names of the actors given (timeline rows, owners)."""
    return {a: n for a in authors if a and (n := who(config, a))}
