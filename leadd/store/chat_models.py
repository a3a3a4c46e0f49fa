"""What the conversation, inbox and staff store parts return: frozen dataclasses built from rows,
never a record. The lead, its timeline and its messages are the ops models (models.py:
LeadDetail, TimelineEvent, TouchPointView, MessageView); these are what only the chat page and
the inbox have."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from leadd.store.models import Row


@dataclass(frozen=True)
class ServiceLine:
    name: str
    price: float | None

    @classmethod
    def list_from(cls, value: Any) -> tuple[ServiceLine, ...]:
        """The lead's `services` JSON: [{name, price}], tolerant of odd entries."""
        out = []
        for item in value if isinstance(value, list) else []:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                price = item.get("price")
                ok = isinstance(price, int | float) and not isinstance(price, bool)
                out.append(cls(item["name"], float(price) if ok and price is not None else None))
        return tuple(out)


def vehicle_text(value: Any) -> str | None:
    """The lead's `vehicle` JSON as one line: its description, else year make model."""
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("description"), str) and value["description"].strip():
        return str(value["description"]).strip()
    parts = [str(value[k]) for k in ("year", "make", "model") if value.get(k)]
    return " ".join(parts) or None


def full_name(first: str | None, last: str | None) -> str:
    return " ".join(p for p in (first, last) if p) or "(no name yet)"


def message_kind(direction: str, author: str | None) -> str:
    """Who wrote a transcript line: the customer (inbound), a person at the shop (an outbound
    line with an author: chat_messages.author, 0006), or the automated sequence."""
    if direction == "inbound":
        return "customer"
    return "staff" if author else "automation"


@dataclass(frozen=True)
class ChatSession:
    """A chat link's lead, as the customer's page may show it (first name only)."""

    lead_id: uuid.UUID
    location_id: str
    first_name: str | None
    vehicle: str | None
    services: tuple[ServiceLine, ...]
    state: str
    order_number: str | None
    expires_at: dt.datetime
    seen_at: dt.datetime | None

    @classmethod
    def from_row(cls, r: Row) -> ChatSession:
        return cls(
            lead_id=r["lead_id"],
            location_id=r["location_id"],
            first_name=r["first_name"],
            vehicle=vehicle_text(r["vehicle"]),
            services=ServiceLine.list_from(r["services"]),
            state=r["state"],
            order_number=r["order_number"],
            expires_at=r["expires_at"],
            seen_at=r["seen_at"],
        )


@dataclass(frozen=True)
class Advance:
    """What a customer's or a person's step did to the lead: whether it moved (the lifecycle
    allowed it), and how many automated steps stopped with it."""

    moved: bool
    stopped: int = 0


@dataclass(frozen=True)
class AppointmentRequest:
    id: int
    slot_start: dt.datetime
    slot_end: dt.datetime
    status: str  # requested | confirmed
    created_at: dt.datetime
    confirmed_by: str | None  # the actor (staff:<email>)

    @classmethod
    def from_row(cls, r: Row) -> AppointmentRequest:
        return cls(**{name: r[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ConversationSummary:
    """One line of the inbox list."""

    lead_id: uuid.UUID
    location_id: str
    name: str
    phone: str | None
    state: str
    assigned_to: str | None
    paused: bool
    last_body: str
    last_author: str  # customer | staff | automation (message_kind)
    last_at: dt.datetime
    last_customer_at: dt.datetime | None
    unread: bool
    booking_requested: bool

    @classmethod
    def from_row(cls, r: Row) -> ConversationSummary:
        return cls(
            lead_id=r["id"],
            location_id=r["location_id"],
            name=full_name(r["first_name"], r["last_name"]),
            phone=r["phone"],
            state=r["state"],
            assigned_to=r["assigned_to"],
            paused=r["paused"],
            last_body=r["last_body"],
            last_author=message_kind(r["last_direction"], r["last_author"]),
            last_at=r["last_at"],
            last_customer_at=r["last_customer_at"],
            unread=r["unread"],
            booking_requested=r["booking_requested"],
        )


@dataclass(frozen=True)
class ConversationState:
    """The inbox's own facts about a lead's conversation (the lead itself: LeadDetail)."""

    lead_id: uuid.UUID
    location_id: str
    assigned_to: str | None  # staff e-mail
    read_up_to: int  # chat_messages id: customer messages after it are unread
    seen_at: dt.datetime | None  # the customer's page last open

    @classmethod
    def from_row(cls, r: Row) -> ConversationState:
        return cls(**{name: r[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class SigninFailures:
    key: str
    failures: int
    last_at: dt.datetime

    @classmethod
    def from_row(cls, r: Row) -> SigninFailures:
        return cls(r["key"], r["failures"], r["last_at"])
