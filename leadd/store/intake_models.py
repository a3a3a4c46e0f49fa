"""What the intake store takes and returns: frozen dataclasses, never records."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from leadd.sequences import PlannedStep
from leadd.store.models import Row


@dataclass(frozen=True)
class OrderUpdate:
    """What `apply_order_update` did with an order event for a lead that exists.

    `outcome`: `updated` (stored, and moved when the order said so), `replayed` (this very
    delivery was stored before: nothing changed) or `not_newer` (the order is not newer than
    the one stored: nothing changed). `stored_version`/`stored_updated_at` are the ordering
    facts that were stored before, for telling a duplicate from a stale order."""

    lead_id: uuid.UUID
    state: str  # the lead's state afterwards
    outcome: str
    stored_version: int | None = None
    stored_updated_at: dt.datetime | None = None


@dataclass(frozen=True)
class EnrichmentJob:
    """A lead claimed for enrichment (leased until the claim's `lease` runs out)."""

    id: uuid.UUID
    location_id: str
    shopmonkey_order_id: str
    order_data: dict[str, Any]
    customer_id: str | None
    vehicle_id: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None
    email: str | None
    vehicle: dict[str, Any]
    services: list[Any]
    enrichment_status: str  # pending | partial (done and failed are never claimed)
    enrichment_attempts: int  # this claim included
    enrichment_failures: int
    attached_to: uuid.UUID | None

    @classmethod
    def from_row(cls, row: Row) -> EnrichmentJob:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class NewLead:
    """An order's new lead, as insert_lead writes it."""

    lead_id: uuid.UUID
    location_id: str
    order_id: str
    order_number: str | None
    source: str
    order_version: int | None
    order_updated_at: dt.datetime | None
    order_data: dict[str, Any]
    customer_id: str | None
    vehicle_id: str | None
    cause: str
    detail: dict[str, Any]
    sequence: str
    steps: tuple[PlannedStep, ...]
    replay_digest: bytes | None
    replay_until: dt.datetime | None
    now: dt.datetime


@dataclass(frozen=True)
class Enrichment:
    """What to store on a lead after an enrichment attempt: every field as it is to be
    (the caller merges what this attempt learned with what was known)."""

    first_name: str | None
    last_name: str | None
    phone: str | None
    email: str | None
    vehicle: dict[str, Any]
    services: list[Any]
    status: str  # pending | partial | done
    retry_at: dt.datetime | None  # when to try again (None: done)
    error: str | None  # what is missing or went wrong, in words


@dataclass(frozen=True)
class SavedEnrichment:
    attached_to: uuid.UUID | None  # the older lead of the same person it was attached to now
    due: bool  # a touch point of the lead is due now: the send loop has work


@dataclass(frozen=True)
class EnrichmentFailure:
    """A lead's enrichment state after a recorded failure."""

    status: str  # failed when given up
    failures: int


@dataclass(frozen=True)
class ChatLink:
    """A lead's chat session as enrichment creates it (chat, issue 10): the hash of its link's
    token (leadd/chatlinks.py; the token itself is never stored) and when the link expires."""

    token_hash: bytes
    expires_at: dt.datetime
