"""What the outreach part of the store takes and returns: frozen dataclasses, never records.

Out: a claimed `TouchPoint` (with the lead's columns the gate and the templates read), the
gate's facts (`GateResult`), what recording a send changed (`SentRecord`), the gauges
(`DueCounts`). In: one provider answer (`Attempt`), what becomes of a row after a failed
attempt (`KeepInDoubt`, `RetryAt`, `WaitForSender`, `Fail`) and what the provider said about the address
(`AddressOutcome`). The ops models are in store/models.py.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from leadd.store.models import Row


@dataclass(frozen=True)
class TouchPoint:
    """A touch point claimed by this daemon (`sending`, leased to it), as claimed."""

    id: int
    lead_id: uuid.UUID
    kind: str  # sequence | staff
    sequence: str
    step_index: int
    step_name: str
    channel: str  # sms | email
    due_at: dt.datetime
    attempts: int  # claims so far, this one included
    claimed_by: str | None  # the lease owner (the claimer, when just claimed)
    claimed_at: dt.datetime | None
    # Set by the gate, for reconciliation: when the send passed it, and what was sent.
    gated_at: dt.datetime | None
    recipient: str | None
    sender: str | None
    body: str | None  # a staff message's text from the claim on; a step's once gated
    reconcile_attempts: int
    prev_claimed_at: dt.datetime | None  # a stale claim: when the lost attempt began
    # The lead, as it was when claimed.
    lead_state: str
    location_id: str
    first_name: str | None
    last_name: str | None
    phone: str | None
    email: str | None
    vehicle: dict[str, Any]
    services: list[Any]
    order_number: str | None
    attached_to: uuid.UUID | None
    lead_created_at: dt.datetime
    chat_token_hash: bytes | None  # the chat link's token is derived again (leadd.chatlinks)
    unsubscribe_token: str | None

    @classmethod
    def from_row(cls, row: Row) -> TouchPoint:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class GateResult:
    """The gate's facts about a row, read under its row lock (sql: gate_touchpoint)."""

    state: str
    claimed_by: str | None
    lead_state: str
    attached_to: uuid.UUID | None
    opted_out: bool
    recent: tuple[dt.datetime, ...]  # what the SMS cap counts (sends to the address)
    passed: bool  # marked in flight: the caller may send now

    @classmethod
    def from_row(cls, row: Row) -> GateResult:
        return cls(
            state=row["state"],
            claimed_by=row["claimed_by"],
            lead_state=row["lead_state"],
            attached_to=row["attached_to"],
            opted_out=row["opted_out"],
            recent=tuple(row["recent"]),
            passed=row["passed"],
        )


@dataclass(frozen=True)
class SentRecord:
    """`recorded`: the row was ours and is now `sent`; `moved`: this send moved its lead
    new -> contacted (the lead's first)."""

    recorded: bool
    moved: bool


@dataclass(frozen=True)
class DueCounts:
    due: int
    overdue: int
    unconfirmed: int


@dataclass(frozen=True)
class Attempt:
    """One provider call, as message_attempts keeps it."""

    channel: str
    provider: str  # twilio | sendgrid
    outcome: str  # sent | retry | failed | reconciled
    provider_id: str | None = None
    http_status: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    latency_ms: float | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class KeepInDoubt:
    """The provider may have taken it: stay `sending`, handed over to reconciliation (owned by
    nobody, so no heartbeat of the sender renews it) with a lease that ends in `lookup_in`
    seconds, when the message list can be trusted to show it. If the lookup does not find it,
    it is resent at `retry_at` (the retry backoff), not before."""

    lookup_in: float
    retry_at: dt.datetime


@dataclass(frozen=True)
class RetryAt:
    """Back to `scheduled`, due at `due_at`, `reason` on the row."""

    due_at: dt.datetime
    reason: str


@dataclass(frozen=True)
class WaitForSender:
    """The provider said "slow down" and took nothing: back to `scheduled`, due at `until`
    (when the client's pause for the sender ends), `reason` on the row; not an attempt."""

    until: dt.datetime
    reason: str


@dataclass(frozen=True)
class Fail:
    """`failed` for good, `reason` on the row."""

    reason: str


RowChange = KeepInDoubt | RetryAt | WaitForSender | Fail


@dataclass(frozen=True)
class AddressOutcome:
    """What the provider said about the address, applied whoever owns the row now: every
    send to it that has not passed its gate is cancelled (`cancel_reason`); with
    `opt_out_reason` the address is opted out, with `lead_error` the lead says why."""

    channel: str
    address: str
    cancel_reason: str
    opt_out_reason: str | None = None
    lead_error: str | None = None
