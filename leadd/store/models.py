"""What the store returns: frozen dataclasses built from rows (`X.from_row`), never records.

Times are aware datetimes (UTC from PostgreSQL); ids are UUIDs for leads and ints for touch
points. JSON columns arrive decoded (the pool's jsonb codec).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from leadd import phones

MIN_DIGITS = 4  # a search with fewer digits is not matched as part of a phone number


class Row(Protocol):
    """A row as asyncpg gives it, or a decoded JSON object: anything with `row["column"]`."""

    def __getitem__(self, key: str, /) -> Any: ...


@dataclass(frozen=True)
class LeadCursor:
    """A position in the lead list (newest first): the last row of the previous page."""

    created_at: dt.datetime
    id: uuid.UUID


@dataclass(frozen=True)
class LeadSearch:
    """A normalised `q`: an E.164 phone (exact), lower-cased text (name or e-mail contains)
    and the digits of q (phone contains); None where q has no such form."""

    text: str
    phone: str | None = None
    digits: str | None = None

    @classmethod
    def of(cls, q: str, region: str) -> LeadSearch:
        """The forms of a checked, stripped q, one way for the ops API and the inbox: the E.164
        phone (phones.normalize), the lower-cased text, and its digits when there are at least
        MIN_DIGITS of them (fewer are not searched as part of a phone number)."""
        digits = "".join(c for c in q if c.isdigit())
        return cls(
            text=q.lower(),
            phone=phones.normalize(q, region),
            digits=digits if len(digits) >= MIN_DIGITS else None,
        )


@dataclass(frozen=True)
class LeadSummary:
    id: uuid.UUID
    state: str
    location_id: str
    source: str
    order_number: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None
    email: str | None
    paused_at: dt.datetime | None
    attached_to: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_row(cls, row: Row) -> LeadSummary:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    @property
    def name(self) -> str:
        return " ".join(x for x in (self.first_name, self.last_name) if x)

    @property
    def cursor(self) -> LeadCursor:
        return LeadCursor(self.created_at, self.id)


@dataclass(frozen=True)
class LeadPage:
    leads: tuple[LeadSummary, ...]
    next_cursor: LeadCursor | None  # None: this is the last page


@dataclass(frozen=True)
class TimelineEvent:
    """A lifecycle row: a state change (or a pause/resume/attachment, from == to)."""

    id: int
    from_state: str | None
    to_state: str
    cause: str
    actor: str | None  # the person (API token name, cli:<user>); None: leadd or the customer
    detail: Mapping[str, Any]
    at: dt.datetime

    @classmethod
    def from_row(cls, row: Row) -> TimelineEvent:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class TouchPointView:
    id: int
    kind: str  # sequence | staff
    sequence: str
    step_index: int
    step_name: str
    channel: str
    state: str  # scheduled | sending | sent | failed | cancelled | skipped
    due_at: dt.datetime
    sent_at: dt.datetime | None
    attempts: int
    last_error: str | None  # why it was skipped, cancelled or failed (or the last retry)
    dry_run: bool
    author: str | None
    updated_at: dt.datetime
    delivery_status: str | None
    body: str | None = None  # what a person wrote (kind 'staff'); None for a sequence step

    @classmethod
    def from_row(cls, row: Row) -> TouchPointView:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class MessageView:
    id: int
    direction: str  # inbound | outbound
    channel: str
    body: str
    provider_id: str | None
    author: str | None  # staff author of an outbound message; None: automated or customer
    dry_run: bool
    delivery_status: str | None
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: Row) -> MessageView:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class OptOut:
    channel: str
    address: str
    reason: str
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: Row) -> OptOut:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class OptOutCursor:
    created_at: dt.datetime
    channel: str
    address: str


@dataclass(frozen=True)
class OptOutPage:
    opt_outs: tuple[OptOut, ...]
    next_cursor: OptOutCursor | None


@dataclass(frozen=True)
class LeadDetail:
    id: uuid.UUID
    state: str
    location_id: str
    source: str
    shopmonkey_order_id: str
    order_number: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None
    email: str | None
    vehicle: Mapping[str, Any]
    services: Sequence[Any]
    enrichment_status: str
    attached_to: uuid.UUID | None
    paused_at: dt.datetime | None
    last_error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    events: tuple[TimelineEvent, ...] = ()
    touch_points: tuple[TouchPointView, ...] = ()
    messages: tuple[MessageView, ...] = ()
    opt_outs: tuple[OptOut, ...] = ()

    @classmethod
    def from_row(
        cls,
        row: Row,
        *,
        events: Sequence[Row] = (),
        touch_points: Sequence[Row] = (),
        messages: Sequence[Row] = (),
        opt_outs: Sequence[Row] = (),
    ) -> LeadDetail:
        children = {"events", "touch_points", "messages", "opt_outs"}
        return cls(
            **{name: row[name] for name in cls.__dataclass_fields__ if name not in children},
            events=tuple(TimelineEvent.from_row(r) for r in events),
            touch_points=tuple(TouchPointView.from_row(r) for r in touch_points),
            messages=tuple(MessageView.from_row(r) for r in messages),
            opt_outs=tuple(OptOut.from_row(r) for r in opt_outs),
        )


@dataclass(frozen=True)
class StateChange:
    """What set_state found and did: `changed` False means the lifecycle forbade it."""

    lead_id: uuid.UUID
    from_state: str
    to_state: str
    changed: bool


@dataclass(frozen=True)
class PauseChange:
    """The lead's pause after pause()/resume(); `changed` False: it already was so.
    `skipped`: automated steps that came due while paused (resume only)."""

    lead_id: uuid.UUID
    state: str
    paused_at: dt.datetime | None
    changed: bool
    skipped: int = 0


@dataclass(frozen=True)
class StaffMessage:
    """A staff SMS as queued, or why it was refused (`refused`: 'opted_out' | 'no_phone')."""

    lead_id: uuid.UUID
    touch_point_id: int | None
    due_at: dt.datetime | None
    refused: str | None = None


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class FunnelStage:
    stage: str
    reached: int  # leads that got at least this far (a lost lead counts for the stages it passed)
    conversion: float | None  # reached / reached at the previous stage; None for the first

    @classmethod
    def from_row(cls, row: Row) -> FunnelStage:
        conv = row["conversion"]
        return cls(row["stage"], int(row["reached"]), None if conv is None else float(conv))


@dataclass(frozen=True)
class MessageCounts:
    sent: int = 0  # accepted by the provider (not dry-run)
    dry_run: int = 0  # recorded in dry-run mode: nothing left the machine
    delivered: int = 0
    failed: int = 0

    @classmethod
    def from_row(cls, row: Row) -> MessageCounts:
        return cls(int(row["sent"]), int(row["dry_run"]), int(row["delivered"]), int(row["failed"]))


@dataclass(frozen=True)
class ReportSection:
    """The numbers of one location, or of all of them (location_id None)."""

    location_id: str | None
    leads: int = 0
    contacted: int = 0
    replied: int = 0
    reply_rate: float | None = None  # replied / contacted
    lost: int = 0
    answered: int = 0  # leads with a message accepted by a provider
    speed_to_lead_p50: float | None = None  # seconds, lead created -> first accepted message
    speed_to_lead_p90: float | None = None
    opted_out_sms: int = 0  # leads whose phone is opted out of SMS
    opted_out_email: int = 0
    by_source: Mapping[str, int] = field(default_factory=dict)
    by_state: Mapping[str, int] = field(default_factory=dict)
    funnel: tuple[FunnelStage, ...] = ()
    messages: Mapping[str, MessageCounts] = field(default_factory=dict)  # by channel


@dataclass(frozen=True)
class Report:
    since: dt.datetime
    until: dt.datetime
    location_id: str | None
    total: ReportSection
    locations: tuple[ReportSection, ...]

    @classmethod
    def from_row(
        cls,
        row: Row,
        *,
        since: dt.datetime,
        until: dt.datetime,
        location_id: str | None,
        stages: Sequence[str],
    ) -> Report:
        """Place the statement's grouped rows (each tagged with its location, or grouped = 1
        for the total) into sections. Nothing is computed here: the numbers come from SQL."""

        def key(part: Row) -> str | None:
            return None if part["grouped"] else str(part["location_id"])

        totals = {key(r): r for r in row["totals"]}
        sections: dict[str | None, dict[str, Any]] = {}
        for k, r in totals.items():
            sections[k] = {
                "location_id": k,
                "leads": int(r["leads"]),
                "contacted": int(r["contacted"]),
                "replied": int(r["replied"]),
                "reply_rate": _float(r["reply_rate"]),
                "lost": int(r["lost"]),
                "answered": int(r["answered"]),
                "speed_to_lead_p50": _float(r["speed_p50"]),
                "speed_to_lead_p90": _float(r["speed_p90"]),
                "opted_out_sms": int(r["opted_out_sms"]),
                "opted_out_email": int(r["opted_out_email"]),
                "by_source": {},
                "by_state": {},
                "funnel": [],
                "messages": {},
            }
        for part, target in (("by_source", "by_source"), ("by_state", "by_state")):
            for r in row[part]:
                sections[key(r)][target][r["key"]] = int(r["n"])
        for r in row["funnel"]:
            sections[key(r)]["funnel"].append(FunnelStage.from_row(r))
        for r in row["messages"]:
            sections[key(r)]["messages"][r["channel"]] = MessageCounts.from_row(r)
        # An empty window has no funnel rows: every stage reached by nobody.
        empty_funnel = [FunnelStage(s, 0, None) for s in stages]
        built = {
            k: ReportSection(**{**v, "funnel": tuple(v["funnel"] or empty_funnel)})
            for k, v in sections.items()
        }
        return cls(
            since=since,
            until=until,
            location_id=location_id,
            total=built[None],
            locations=tuple(v for k, v in sorted(built.items(), key=_by_location) if k is not None),
        )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _by_location(item: tuple[str | None, Any]) -> str:
    return item[0] or ""
