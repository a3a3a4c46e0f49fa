"""What Twilio's answers mean: its error codes, its error bodies and its message-list pages.

Pure functions and constants (no I/O), read by the REST client (leadd/providers/twilio.py)
and by the services that act on a failed send (an opted-out or undeliverable number).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
from collections.abc import Mapping
from typing import Any

# 21610: the recipient texted STOP (or the carrier opted them out). Twilio refuses every later
# send from this sender/service until they text START, so the lead must be marked opted out.
OPT_OUT_CODES = frozenset({21610})
# The number can never receive SMS from us: 21211 invalid 'To', 21614 not a mobile number,
# 21612 'To' not reachable via SMS from this sender, 21408 destination region not enabled,
# 21606 'From' cannot send to this destination. Permanent for the (recipient, sender) pair.
INVALID_RECIPIENT_CODES = frozenset({21211, 21614, 21408, 21612, 21606})
# 20429: REST concurrency exceeded ("safe to retry after backing off"); 21611: this sender
# already has more than 10 hours of messages queued at its MPS. Both mean "slow down".
THROTTLE_CODES = frozenset({20429, 21611})
_MAX_ERROR_TEXT = 300


class TwilioError(Exception):
    """Twilio could not answer a reconciliation query; retry it later, never assume."""

    def __init__(self, message: str, *, http_status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.http_status = http_status
        self.code = code


def parse_error(status: int, text: str) -> tuple[str, str | None]:
    """(code, message) from any Twilio error body; never raises.

    Handles the classic `{code, message, more_info, status}`, RFC 9457 `{title, detail,
    code}`, camelCase product APIs, and non-JSON bodies (proxies, load balancers). The code
    falls back to "http_<status>" so metrics always have a label.
    """
    data = json_object(text)
    code: str | None = None
    message: str | None = None
    if data is not None:
        for key in ("code", "error_code", "errorCode"):
            raw = data.get(key)
            if isinstance(raw, int | str) and not isinstance(raw, bool) and str(raw).strip():
                code = str(raw).strip()
                break
        for key in ("message", "detail", "title", "error_message", "errorMessage"):
            raw = data.get(key)
            if isinstance(raw, str) and raw.strip():
                message = raw.strip()
                break
    elif text.strip():
        message = text.strip()[:_MAX_ERROR_TEXT]
    return code or f"http_{status}", message


def match_message(
    page: Mapping[str, Any], *, to: str, from_: str, cutoff: dt.datetime, body: str | None
) -> str | None:
    for msg in page["messages"]:
        if not isinstance(msg, dict):
            continue
        sid = msg.get("sid")
        if not isinstance(sid, str):
            continue
        # Twilio already filtered To/From; re-check so a misbehaving filter cannot match.
        if msg.get("to") != to or msg.get("from") != from_:
            continue
        if body is not None and msg.get("body") != body:
            continue
        created = parse_rfc2822(msg.get("date_created"))
        if created is None:
            raise TwilioError(f"message {sid} has an unreadable date_created")
        if created >= cutoff:
            return sid
    return None


def reaches_before(page: Mapping[str, Any], cutoff: dt.datetime) -> bool:
    """Newest-first listing: once a page holds a message created before the cutoff, the
    pages after it are older still."""
    for msg in page["messages"]:
        created = parse_rfc2822(msg.get("date_created")) if isinstance(msg, dict) else None
        if created is not None and created < cutoff:
            return True
    return False


def parse_rfc2822(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def json_object(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


__all__ = [
    "INVALID_RECIPIENT_CODES",
    "OPT_OUT_CODES",
    "THROTTLE_CODES",
    "TwilioError",
    "json_object",
    "match_message",
    "parse_error",
    "parse_rfc2822",
    "reaches_before",
]
