"""Shopmonkey order events: decoding, validation and ordering. Pure (no I/O).

Webhook and poller feed the same `validate_order`, so an order seen both ways is held to one
standard. A lead only moves forward: deliveries that are not newer than what is stored
(`meta.version`, else `updatedDate`; no version information at all is not newer) change
nothing (`is_newer`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

OPERATIONS = ("INSERT", "UPDATE", "DELETE")
MAX_DEPTH = 32
MAX_ID_LENGTH = 128
MAX_BIGINT = 2**63 - 1  # order_version is a PostgreSQL bigint
MAX_ORDER_NUMBER_LENGTH = 32
NO_ORDER_REF = "(no usable id)"


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

    @property
    def cause(self) -> str:
        """The timeline's cause for what this event does to its lead."""
        return f"order.{self.operation.lower()}"


@dataclass(frozen=True)
class IngestResult:
    lead_id: uuid.UUID | None
    # created | duplicate | replayed | updated | stale | ignored; at the webhook also
    # unstorable (the database refuses this one order: reason says why)
    result: str
    state: str | None = None
    reason: str | None = None


# --------------------------------------------------------------------------- decoding


def decode_json(raw: bytes) -> Any:
    """Strict UTF-8 JSON; raises ValueError with a reason fit for a 400."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("body is not valid UTF-8") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON, and PostgreSQL's jsonb refuses them.
    raise ValueError(f"body is not valid JSON: {name} is not a JSON number")


def clean_delivery_id(value: str | None) -> str | None:
    """Shopmonkey's delivery id for the lead's timeline: printable and bounded, or None (it
    is stored as JSON, where a lone surrogate from an undecodable header byte is refused)."""
    if not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


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


# --------------------------------------------------------------------------- what an order says


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


def order_version(order: dict[str, Any]) -> int | None:
    v = (order.get("meta") or {}).get("version")
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def order_updated_at(order: dict[str, Any]) -> dt.datetime | None:
    return parse_time(order.get("updatedDate"))


def is_newer(
    order: dict[str, Any], stored_version: int | None, stored_updated: dt.datetime | None
) -> bool:
    """Ordering guard: meta.version when both sides have it, else updatedDate.

    With nothing to compare, a delivery is not newer: a body without `meta.version` and
    `updatedDate` (a replay, or a truncated row) must never overwrite what is stored. The one
    exception is a stored order that itself carried neither: a delivery that does carry one
    is the first ordering information the lead gets."""
    version = order_version(order)
    if version is not None and stored_version is not None:
        return version > stored_version
    updated = order_updated_at(order)
    if updated is not None and stored_updated is not None:
        return updated > stored_updated
    knows_order = version is not None or updated is not None
    return knows_order and stored_version is None and stored_updated is None


def is_same(
    order: dict[str, Any], stored_version: int | None, stored_updated: dt.datetime | None
) -> bool:
    """The order is the one stored (a duplicate), rather than an older one (stale)."""
    version = order_version(order)
    if version is not None and stored_version is not None:
        return version == stored_version
    return order_updated_at(order) == stored_updated


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
