"""What the conversation store returns: frozen dataclasses built from rows, never a Record."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

Row = asyncpg.Record


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
class Message:
    id: int
    direction: str  # inbound | outbound
    channel: str  # sms | email | web
    author: str  # customer | automation | staff
    staff_name: str | None
    body: str
    created_at: dt.datetime
    delivery: str | None  # a staff SMS's touch-point state; None otherwise
    delivery_error: str | None

    @classmethod
    def from_row(cls, r: Row) -> Message:
        return cls(
            id=r["id"],
            direction=r["direction"],
            channel=r["channel"],
            author=r["author"],
            staff_name=r["staff_name"],
            body=r["body"],
            created_at=r["created_at"],
            delivery=r["delivery"],
            delivery_error=r["delivery_error"],
        )


@dataclass(frozen=True)
class LockedLead:
    state: str
    phone: str | None
    location_id: str


@dataclass(frozen=True)
class LeadMove:
    """A state change to apply, decided by the caller from the lifecycle rules."""

    target: str
    allowed_from: tuple[str, ...]  # the states the lead may be in for it to move
    cause: str
    detail: Mapping[str, Any]
    stop_automation: str | None = None  # stop scheduled automated steps, with this reason


@dataclass(frozen=True)
class Move:
    """The outcome of a state change: the state before, and whether it moved."""

    from_state: str
    moved: bool
    stopped: int  # automated touch points stopped with it


@dataclass(frozen=True)
class AppointmentRequest:
    id: int
    slot_start: dt.datetime
    slot_end: dt.datetime
    status: str  # requested | confirmed
    created_at: dt.datetime
    confirmed_by: str | None

    @classmethod
    def from_row(cls, r: Row) -> AppointmentRequest:
        return cls(
            id=r["id"],
            slot_start=r["slot_start"],
            slot_end=r["slot_end"],
            status=r["status"],
            created_at=r["created_at"],
            confirmed_by=r["confirmed_by"],
        )


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
    last_author: str
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
            last_author=r["last_author"],
            last_at=r["last_at"],
            last_customer_at=r["last_customer_at"],
            unread=r["unread"],
            booking_requested=r["booking_requested"],
        )


def full_name(first: str | None, last: str | None) -> str:
    return " ".join(p for p in (first, last) if p) or "(no name yet)"


@dataclass(frozen=True)
class Conversation:
    """One lead as staff see it."""

    lead_id: uuid.UUID
    location_id: str
    name: str
    first_name: str | None
    phone: str | None
    email: str | None
    state: str
    vehicle: str | None
    services: tuple[ServiceLine, ...]
    order_number: str | None
    created_at: dt.datetime
    assigned_to: str | None
    paused_at: dt.datetime | None
    paused_by: str | None
    read_up_to: int
    seen_at: dt.datetime | None
    sms_opted_out: bool

    @classmethod
    def from_row(cls, r: Row) -> Conversation:
        return cls(
            lead_id=r["id"],
            location_id=r["location_id"],
            name=full_name(r["first_name"], r["last_name"]),
            first_name=r["first_name"],
            phone=r["phone"],
            email=r["email"],
            state=r["state"],
            vehicle=vehicle_text(r["vehicle"]),
            services=ServiceLine.list_from(r["services"]),
            order_number=r["order_number"],
            created_at=r["created_at"],
            assigned_to=r["assigned_to"],
            paused_at=r["paused_at"],
            paused_by=r["paused_by"],
            read_up_to=r["read_up_to"],
            seen_at=r["seen_at"],
            sms_opted_out=r["sms_opted_out"],
        )


@dataclass(frozen=True)
class LeadEvent:
    from_state: str | None
    to_state: str
    cause: str
    detail: Mapping[str, Any]
    at: dt.datetime

    @classmethod
    def from_row(cls, r: Row) -> LeadEvent:
        detail = r["detail"] if isinstance(r["detail"], dict) else {}
        return cls(r["from_state"], r["to_state"], r["cause"], detail, r["at"])


@dataclass(frozen=True)
class TouchPointLine:
    id: int
    step_name: str
    channel: str
    state: str
    due_at: dt.datetime
    sent_at: dt.datetime | None
    last_error: str | None

    @classmethod
    def from_row(cls, r: Row) -> TouchPointLine:
        return cls(
            r["id"],
            r["step_name"],
            r["channel"],
            r["state"],
            r["due_at"],
            r["sent_at"],
            r["last_error"],
        )


@dataclass(frozen=True)
class Timeline:
    """What the conversation view shows besides the messages."""

    messages: tuple[Message, ...]
    events: tuple[LeadEvent, ...]
    touch_points: tuple[TouchPointLine, ...]
    appointments: tuple[AppointmentRequest, ...]


@dataclass(frozen=True)
class StaffSms:
    """What queueing a staff SMS did: `message_id` when queued, else why not."""

    message_id: int | None
    refused: str | None  # "opted_out" | "no_phone" | None


@dataclass(frozen=True)
class SigninFailures:
    key: str
    failures: int
    last_at: dt.datetime
