"""Parsing what people and scripts type (query strings, CLI arguments) into typed values, one
way for the API and the CLI. Every failure is a BadRequest naming the parameter."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from typing import Any

from leadd.config import Config
from leadd.operations.errors import BadRequest, NotFound
from leadd.store.models import LeadCursor, OptOutCursor

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_CURSOR_PREFIX = "c1."  # the format's version: a future format can still read (or refuse) these


def text(parameter: str, value: object, max_length: int) -> str:
    """Stripped, non-empty text PostgreSQL can store (no NUL, no lone UTF-16 surrogate)."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(parameter, "required: a non-empty string")
    value = value.strip()
    if len(value) > max_length:
        raise BadRequest(parameter, f"expected at most {max_length} characters")
    if "\x00" in value or not _encodable(value):
        raise BadRequest(parameter, "must not contain NUL characters or lone surrogates")
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def lead_id(text: str) -> uuid.UUID:
    """A malformed id names no lead: 404, like an id of another tenant."""
    try:
        return uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        raise NotFound("lead not found") from None


def timestamp(parameter: str, text: str) -> dt.datetime:
    """ISO 8601: a date (midnight UTC) or a date and time; without an offset, UTC."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise BadRequest(
            parameter, f"expected an ISO 8601 date or time such as 2026-03-02 or "
            f"2026-03-02T15:00:00Z, got {text[:40]!r}"
        ) from None  # fmt: skip
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def limit(text: str | int) -> int:
    try:
        value = int(text)
    except (ValueError, TypeError):
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise BadRequest(
            "limit", f"expected an integer from 1 to {MAX_LIMIT}, got {str(text)[:20]!r}"
        )
    return value


def check_location(config: Config, location: str | None) -> None:
    known = [loc.id for loc in config.locations]
    if location is not None and location not in known:
        raise BadRequest(
            "location", f"unknown location {location[:40]!r}; known: {', '.join(known)}"
        )


def encode_lead_cursor(cursor: LeadCursor) -> str:
    return _encode([cursor.created_at.isoformat(), str(cursor.id)])


def decode_lead_cursor(text: str) -> LeadCursor:
    created_at, lead = _decode(text, 2)
    try:
        return LeadCursor(_aware(created_at), uuid.UUID(lead))
    except (ValueError, TypeError, AttributeError):
        raise _bad_cursor() from None


def encode_opt_out_cursor(cursor: OptOutCursor) -> str:
    return _encode([cursor.created_at.isoformat(), cursor.channel, cursor.address])


def decode_opt_out_cursor(text: str) -> OptOutCursor:
    created_at, channel, address = _decode(text, 3)
    if not all(
        isinstance(x, str) and "\x00" not in x and _encodable(x) for x in (channel, address)
    ):
        raise _bad_cursor()
    try:
        return OptOutCursor(_aware(created_at), channel, address)
    except (ValueError, TypeError, AttributeError):
        raise _bad_cursor() from None


def _encode(parts: list[str]) -> str:
    raw = json.dumps(parts, separators=(",", ":")).encode()
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(text: str, n: int) -> list[Any]:
    if not isinstance(text, str) or not text.startswith(_CURSOR_PREFIX) or len(text) > 512:
        raise _bad_cursor()
    body = text[len(_CURSOR_PREFIX) :]
    try:
        parts = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _bad_cursor() from None
    if not isinstance(parts, list) or len(parts) != n:
        raise _bad_cursor()
    return parts


def _aware(value: Any) -> dt.datetime:
    when = dt.datetime.fromisoformat(value)
    if when.tzinfo is None:
        raise ValueError("cursor time without offset")
    return when


def _bad_cursor() -> BadRequest:
    return BadRequest("cursor", "not a cursor this API returned (pass next_cursor as given)")
