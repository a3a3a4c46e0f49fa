"""The lead lifecycle: states, allowed transitions, and ingestion of Shopmonkey order events.

Webhook and poller feed the same `validate_order` and `ingest`, so an order seen both ways is
one lead and is held to one standard. A lead only moves forward; deliveries that are not newer
than what is stored (`meta.version`, else `updatedDate`; no version information at all is not
newer) change nothing. A signed webhook delivery is remembered until its signature expires, so
a replay of it is answered `duplicate` without touching the lead. Every state change is a
`lead_events` row.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from leadd import db as dbmod
from leadd import metrics, sequences
from leadd.config import Config
from leadd.db import Conn, Q
from leadd.lifecycle import TERMINAL, can_transition
from leadd.logs import get_logger

log = get_logger(__name__)

OPERATIONS = ("INSERT", "UPDATE", "DELETE")
MAX_DEPTH = 32
MAX_ID_LENGTH = 128
MAX_BIGINT = 2**63 - 1  # order_version is a PostgreSQL bigint


def order_target_state(order: dict[str, Any], operation: str = "UPDATE") -> str | None:
    """What the order itself says about the lead's state, strongest signal first."""
    if operation == "DELETE" or order.get("deleted") is True:
        return "lost"
    if order.get("invoiced") is True or order.get("paid") is True:
        return "completed"
    if order.get("appointmentDates"):
        return "appointment_set"
    if order.get("authorized") is True:
        return "qualified"
    return None


class BadEvent(ValueError):
    """A signed body that is not a usable order event (400)."""


@dataclass(frozen=True)
class Replay:
    """What makes a verified delivery recognisable if it comes again: a digest (of the
    delivery id, or of a legacy-signed body) and until when its signature would still pass."""

    digest: bytes
    until: dt.datetime


@dataclass(frozen=True)
class OrderEvent:
    operation: str
    order: dict[str, Any]
    source: str  # webhook | poll | test
    delivery_id: str | None = None
    replay: Replay | None = None

    @property
    def order_id(self) -> str:
        return str(self.order["id"])


@dataclass(frozen=True)
class IngestResult:
    lead_id: uuid.UUID | None
    result: str  # created | duplicate | replayed | updated | stale | ignored
    state: str | None = None
    reason: str | None = None


# --------------------------------------------------------------------------- validation

_OPTIONAL_STR = ("customerId", "vehicleId", "locationId", "updatedDate", "createdDate", "name")
_OPTIONAL_BOOL = ("authorized", "invoiced", "paid", "deleted", "archived")


def parse_event(
    payload: Any, source: str, delivery_id: str | None = None, replay: Replay | None = None
) -> OrderEvent | str:
    """Validate a decoded webhook body. Returns the event, or a reason string when the event
    is well-formed but not an order (answered 200 ignored). Raises BadEvent for garbage.
    Only `data` is stored, so only `data` goes through `validate_order`'s full checks."""
    if not isinstance(payload, dict):
        raise BadEvent("body must be a JSON object")
    table = payload.get("table")
    if not isinstance(table, str):
        raise BadEvent("'table' must be a string")
    if table != "order":
        return f"table '{table[:40]}' is not an order"
    op = payload.get("operation")
    if op not in OPERATIONS:
        raise BadEvent(f"'operation' must be one of {', '.join(OPERATIONS)}")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise BadEvent("'data' must be an object")
    return OrderEvent(op, validate_order(data), source, delivery_id, replay)


def validate_order(data: Any) -> dict[str, Any]:
    """The one check every order passes before it is stored, by webhook or by poll: what
    PostgreSQL could not store (`_check_tree`), then the fields leadd reads. Raises BadEvent
    with a reason that names the field, never its value."""
    if not isinstance(data, dict):
        raise BadEvent("an order must be a JSON object")
    _check_tree(data)
    oid = data.get("id")
    if not isinstance(oid, str) or not oid.strip():
        raise BadEvent("'data.id' must be a non-empty string")
    if len(oid) > MAX_ID_LENGTH:
        raise BadEvent(f"'data.id' longer than {MAX_ID_LENGTH} characters")
    for key in _OPTIONAL_STR:
        if data.get(key) is not None and not isinstance(data[key], str):
            raise BadEvent(f"'data.{key}' must be a string or null")
    for key in _OPTIONAL_BOOL:
        if data.get(key) is not None and not isinstance(data[key], bool):
            raise BadEvent(f"'data.{key}' must be a boolean or null")
    number = data.get("number")
    if number is not None and (isinstance(number, bool) or not isinstance(number, int | str)):
        raise BadEvent("'data.number' must be an integer or null")
    appts = data.get("appointmentDates")
    if appts is not None and not isinstance(appts, list):
        raise BadEvent("'data.appointmentDates' must be a list or null")
    meta = data.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise BadEvent("'data.meta' must be an object or null")
    version = (meta or {}).get("version")
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= MAX_BIGINT
    ):
        raise BadEvent("'data.meta.version' must be a non-negative 64-bit integer")
    if data.get("updatedDate") is not None and parse_time(data["updatedDate"]) is None:
        raise BadEvent("'data.updatedDate' must be an ISO 8601 timestamp")
    return data


def _check_tree(payload: Any) -> None:
    """Reject what JSON allows but PostgreSQL cannot store, before it reaches the database
    (where it would be a 503 that Shopmonkey retries forever): nesting deeper than MAX_DEPTH,
    NUL characters and lone surrogates in strings or keys, NaN and infinite numbers.
    Iterative, so a hostile body cannot exhaust the stack."""
    stack: list[tuple[Any, int]] = [(payload, 0)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, dict | list):
            if level >= MAX_DEPTH:
                raise BadEvent(f"JSON nested deeper than {MAX_DEPTH} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key)
                    stack.append((item, level + 1))
            else:
                stack.extend((item, level + 1) for item in value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise BadEvent("JSON numbers must be finite")


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise BadEvent("strings must not contain NUL characters")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise BadEvent("strings must not contain lone UTF-16 surrogates") from None


def parse_time(value: Any) -> dt.datetime | None:
    """An ISO 8601 timestamp as an aware UTC datetime; None when it is not one, or when it
    cannot be one in UTC (year 1 at +23:59 overflows: the driver would raise on it)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return t.astimezone(dt.UTC) if t.tzinfo else t.replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        return None


def _version(order: dict[str, Any]) -> int | None:
    v = (order.get("meta") or {}).get("version")
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def is_newer(
    order: dict[str, Any], stored_version: int | None, stored_updated: dt.datetime | None
) -> bool:
    """Ordering guard: meta.version when both sides have it, else updatedDate.

    With nothing to compare, a delivery is not newer: a body without `meta.version` and
    `updatedDate` (a replay, or a truncated row) must never overwrite what is stored. The one
    exception is a stored order that itself carried neither: a delivery that does carry one
    is the first ordering information the lead gets."""
    version = _version(order)
    if version is not None and stored_version is not None:
        return version > stored_version
    updated = parse_time(order.get("updatedDate"))
    if updated is not None and stored_updated is not None:
        return updated > stored_updated
    knows_order = version is not None or updated is not None
    return knows_order and stored_version is None and stored_updated is None


# SQLSTATE classes that say "the database is unavailable right now", not "this order cannot
# be stored": connection (08), rollback/serialization (40), resources (53), object in use (55),
# operator intervention (57), system (58), internal (XX).
_TRANSIENT_SQLSTATE = frozenset({"08", "40", "53", "55", "57", "58", "XX"})


def is_transient(exc: BaseException) -> bool:
    """True when storing failed because the database (or the way to it) is unavailable: retry
    the whole delivery or poll cycle later, never skip the order. False when the failure
    belongs to the one order (a value PostgreSQL or the driver refuses, a constraint, or a
    bug its data triggers): contain it to that order."""
    if isinstance(exc, asyncpg.exceptions._base.DataError):
        return False  # the driver refused one of our values: the order's, not the database's
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError):
        return True
    if isinstance(exc, asyncpg.InternalClientError):
        return True  # the server cut a pooled connection the pool had not noticed yet
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "")[:2] in _TRANSIENT_SQLSTATE
    return False


# --------------------------------------------------------------------------- ingestion


async def ingest(
    db: dbmod.Database, cfg: Config, event: OrderEvent, now: dt.datetime | None = None
) -> IngestResult:
    """Store an order event idempotently; create the lead (with its touch points) or move it."""
    order = event.order
    now = now or dt.datetime.now(dt.UTC)
    target = order_target_state(order, event.operation)
    # A first sighting that is not a fresh request (already closed, or an old order that was
    # merely edited today, seen by the poller or an UPDATE) must not start a "thanks for your
    # request" sequence. An INSERT is a new order by definition, however late it arrives.
    created_at = parse_time(order.get("createdDate"))
    too_old = (
        event.operation != "INSERT"
        and created_at is not None
        and (now - created_at).total_seconds() > cfg.leads.max_order_age
    )
    if target in TERMINAL or too_old:
        existing = await db.fetchrow("lead_id_by_order", event.order_id)
        if existing is None:
            reason = (
                "order already closed"
                if target in TERMINAL
                else ("order created before the lead window (leads.max_order_age)")
            )
            metrics.LEADS_INGESTED.labels(event.source, "ignored").inc()
            return IngestResult(None, "ignored", reason=reason)
    else:
        created = await _create(db, cfg, event, now)
        if created is not None:
            metrics.LEADS_INGESTED.labels(event.source, "created").inc()
            if target is not None:  # e.g. first seen already authorized
                # Not through _apply_update: the order just stored is not newer than itself.
                await advance(db, created, target, _cause(event), {"source": event.source})
            return IngestResult(created, "created", target or "new")
    result = await _apply_update(db, event, target)
    metrics.LEADS_INGESTED.labels(event.source, result.result).inc()
    return result


async def _create(
    db: dbmod.Database, cfg: Config, event: OrderEvent, now: dt.datetime
) -> uuid.UUID | None:
    order = event.order
    location = cfg.location_for_shopmonkey(order.get("locationId"))
    sequence, steps = sequences.plan(cfg, location, now)
    lead_id = uuid.uuid4()
    replay = event.replay
    async with db.pool.acquire() as conn:
        row = await conn.fetchrow(
            Q["insert_lead"],
            db.tenant_id,
            lead_id,
            location.id,
            event.order_id,
            order_number(order),
            event.source,
            _version(order),
            parse_time(order.get("updatedDate")),
            order,
            order.get("customerId"),
            order.get("vehicleId"),
            f"order.{event.operation.lower()}" if event.source == "webhook" else event.source,
            {"source": event.source, "delivery_id": event.delivery_id},
            sequence,
            [s.index for s in steps],
            [s.name for s in steps],
            [s.channel for s in steps],
            [s.due_at for s in steps],
            None if replay is None else replay.digest,
            None if replay is None else replay.until,
        )
    if row is None:
        return None
    metrics.LEADS_CREATED.labels(event.source, location.id).inc()
    log.info(
        "lead.created",
        lead_id=str(lead_id),
        order_id=event.order_id,
        source=event.source,
        location=location.id,
    )
    return row["id"]  # type: ignore[no-any-return]


async def _apply_update(db: dbmod.Database, event: OrderEvent, target: str | None) -> IngestResult:
    order = event.order
    async with db.transaction() as conn:
        row = await conn.fetchrow(Q["lock_lead_by_order"], db.tenant_id, event.order_id)
        if row is None:
            raise LookupError(f"order {event.order_id} vanished during ingestion")
        lead_id, state = row["id"], row["state"]
        if event.replay is not None:
            fresh = await conn.fetchval(
                Q["remember_delivery"], db.tenant_id, event.replay.digest, event.replay.until
            )
            if not fresh:
                # This very delivery was stored before: a replay changes nothing.
                return IngestResult(lead_id, "replayed", state)
        if not is_newer(order, row["order_version"], row["order_updated_at"]):
            # A DELETE may carry the row as last stored (same version): the deletion itself
            # is still news. `lost` is terminal, so this never moves a lead backwards.
            if event.operation == "DELETE" and can_transition(state, "lost"):
                detail = {"source": event.source}
                await _transition(conn, db.tenant_id, lead_id, state, "lost", _cause(event), detail)
                return IngestResult(lead_id, "updated", "lost")
            return IngestResult(lead_id, "duplicate" if _same(order, row) else "stale", state)
        await conn.execute(
            Q["update_lead_order"],
            db.tenant_id,
            lead_id,
            order,
            _version(order),
            parse_time(order.get("updatedDate")),
            order.get("customerId"),
            order.get("vehicleId"),
        )
        if target is not None and can_transition(state, target):
            await _transition(
                conn,
                db.tenant_id,
                lead_id,
                state,
                target,
                _cause(event),
                {"source": event.source},
            )
            state = target
    return IngestResult(lead_id, "updated", state)


MAX_ORDER_NUMBER_LENGTH = 32


def order_number(order: dict[str, Any]) -> str | None:
    """The shop's order number as text, or None when there is none usable (a 400-digit
    number is not one a customer could be told)."""
    number = order.get("number")
    if number is None or isinstance(number, bool) or not isinstance(number, int | str):
        return None
    if isinstance(number, int) and not 0 <= number < 10**MAX_ORDER_NUMBER_LENGTH:
        return None
    text = str(number).strip()
    return text if text and len(text) <= MAX_ORDER_NUMBER_LENGTH else None


def _cause(event: OrderEvent) -> str:
    return f"order.{event.operation.lower()}"


def _same(order: dict[str, Any], row: asyncpg.Record) -> bool:
    version = _version(order)
    if version is not None and row["order_version"] is not None:
        return bool(version == row["order_version"])
    return bool(parse_time(order.get("updatedDate")) == row["order_updated_at"])


async def _transition(
    conn: Conn,
    tenant_id: uuid.UUID,
    lead_id: uuid.UUID,
    current: str,
    target: str,
    cause: str,
    detail: dict[str, Any],
) -> None:
    await conn.execute(Q["set_lead_state"], tenant_id, lead_id, target)
    await conn.execute(Q["insert_lead_event"], tenant_id, lead_id, current, target, cause, detail)
    if target in TERMINAL:
        await conn.execute(Q["cancel_lead_touchpoints"], tenant_id, lead_id, f"lead {target}")
    log.info("lead.state", lead_id=str(lead_id), from_state=current, to_state=target, cause=cause)


async def advance(
    db: dbmod.Database,
    lead_id: uuid.UUID,
    target: str,
    cause: str,
    detail: dict[str, Any] | None = None,
    conn: Conn | None = None,
) -> bool:
    """Move a lead forward if the transition is allowed (replies, first send...)."""
    if conn is None:
        async with db.transaction() as c:
            return await advance(db, lead_id, target, cause, detail, c)
    row = await conn.fetchrow(Q["lock_lead"], db.tenant_id, lead_id)
    if row is None or not can_transition(row["state"], target):
        return False
    await _transition(conn, db.tenant_id, lead_id, row["state"], target, cause, detail or {})
    return True


NO_ORDER_REF = "(no usable id)"


def order_ref(order: Any) -> str:
    """The order's id as an operator can search for it: printable and bounded, whatever the
    order carried (a number, a NUL, nothing)."""
    oid = order.get("id") if isinstance(order, dict) else None
    if isinstance(oid, int) and not isinstance(oid, bool) and abs(oid) < 10**MAX_ID_LENGTH:
        oid = str(oid)
    if isinstance(oid, str):
        text = "".join(c for c in oid[:MAX_ID_LENGTH] if c.isprintable()).strip()
        if text:
            return text
    return NO_ORDER_REF


async def record_rejection(
    db: dbmod.Database, source: str, order: Any, kind: str, reason: str
) -> None:
    """An order refused at intake (`kind`: invalid | unstorable): a `rejected_orders` row for
    operators, counted and logged on its first sighting (the poller's overlap and Shopmonkey's
    retries bring it back). Best effort: refusing the order never depends on recording it."""
    ref = order_ref(order)
    try:
        row = await db.fetchrow("record_rejected_order", source, ref, reason[:500])
    except Exception as exc:
        log.error("order.rejection_not_recorded", source=source, order_id=ref, error=repr(exc))
        return
    if row is not None and row["first"]:
        metrics.ORDERS_REJECTED.labels(source, kind).inc()
        log.warning("order.rejected", source=source, order_id=ref, kind=kind, reason=reason)
    else:
        log.debug("order.rejected_again", source=source, order_id=ref, kind=kind)


def is_test_contact(phone: str | None, email: str | None) -> bool:
    """demo_mode lets through only obvious test people: +1555 numbers, test/demo e-mails."""
    if phone and phone.startswith("+1555"):
        return True
    return email is not None and any(word in email.lower() for word in ("test", "demo"))


def demo_filter_reason(order: dict[str, Any]) -> str | None:
    """For a webhook in demo_mode: a reason to ignore the order when its embedded customer is
    not a test contact. Orders without embedded contact data are checked after enrichment."""
    customer = order.get("customer")
    if not isinstance(customer, dict):
        return None
    from leadd.providers.shopmonkey import primary_email, primary_phone

    phone, email = primary_phone(customer), primary_email(customer)
    if phone is None and email is None:
        return None
    if is_test_contact(phone, email):
        return None
    return "demo_mode: not a test contact"
