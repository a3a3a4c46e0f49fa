"""Converters from YAML values to typed settings: each returns the value or raises ValueError.

Units are converted once here ("30s" -> 30.0 seconds, "09:00-18:00" -> minutes), so the rest
of the code never parses config strings. The caller (node.Node) turns a ValueError into a
problem naming the key path, what was expected and what was found.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from leadd.compliance import Window, parse_window

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LEAD_STATES = ("new", "contacted", "engaged", "qualified", "appointment_set", "completed", "lost")
CHANNELS = ("sms", "email")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_ARGON2ID = re.compile(r"\$argon2id\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+")


def parse_duration(value: Any) -> float:
    """ "30s", "5m", "2h", "1d", "250ms" or a bare number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def positive_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: 86400 -> "1d", 90 -> "90s", 0.25 -> "250ms"."""
    for unit in ("d", "h", "m", "s"):
        count = seconds / _DURATION_UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{round(seconds * 1000)}ms" if seconds else "0s"


def text(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise ValueError
    return str(v)


def nonempty(v: Any) -> str:
    s = text(v).strip()
    if not s:
        raise ValueError
    return s


def flag(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError
    return v


def positive_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError
    return v


def positive_number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        raise ValueError
    return float(v)


def port(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 65535:
        raise ValueError
    return v


def price(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise ValueError
    return round(float(v), 2)


def http_url(v: Any) -> str:
    s = text(v).strip().rstrip("/")
    u = urlparse(s)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError
    return s


def postgres_url(v: Any) -> str | None:
    """A postgresql:// URL; "" (an unset ${VAR:-}) means the embedded server."""
    if v == "":
        return None
    s = text(v).strip()
    if urlparse(s).scheme not in ("postgres", "postgresql"):
        raise ValueError
    return s


def directory(v: Any) -> Path:
    return Path(nonempty(v))


def uuid_value(v: Any) -> uuid.UUID:
    return uuid.UUID(text(v))


def time_zone(v: Any) -> str:
    s = text(v)
    try:
        ZoneInfo(s)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError from exc
    return s


class Unquoted(ValueError):
    """A value YAML turned into a number because it was not quoted."""


def e164_phone(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        raise Unquoted("YAML reads an unquoted +15125550100 as a number: quote it")
    s = text(v).strip()
    try:
        num = phonenumbers.parse(s, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError from exc
    if not s.startswith("+") or not phonenumbers.is_valid_number(num):
        raise ValueError
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def email(v: Any) -> str:
    s = text(v).strip()
    if not _EMAIL.fullmatch(s):
        raise ValueError
    return s


def email_address(v: Any) -> str:
    """An e-mail address, lower-cased (staff sign in with it in any case)."""
    return email(v).lower()


def argon2id_hash(v: Any) -> str:
    s = text(v).strip()
    if not _ARGON2ID.fullmatch(s):
        raise ValueError
    return s


def secret_key(v: Any) -> str:
    """Empty (use the generated key file) or at least 32 characters."""
    s = text(v).strip()
    if s and len(s) < 32:
        raise ValueError
    return s


def staff_locations(v: Any) -> tuple[str, ...] | None:
    """ "all" (None) or a list of location ids (checked against locations by build)."""
    if v == "all":
        return None
    return str_list(v)


def region(v: Any) -> str:
    s = text(v).upper()
    if s not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError
    return s


def window(v: Any) -> Window:
    return parse_window(text(v))


def choice(*options: str) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        s = text(v)
        if s not in options:
            raise ValueError
        return s

    return conv


def str_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list):
        raise ValueError
    return tuple(nonempty(x) for x in v)


def secret_list(v: Any) -> tuple[str, ...]:
    """Like str_list, but empty entries (an unset ${VAR:-}) are dropped, not errors."""
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list):
        raise ValueError
    return tuple(s for s in (text(x).strip() for x in v) if s)


def lead_states(v: Any) -> tuple[str, ...]:
    states = str_list(v)
    if any(s not in LEAD_STATES for s in states):
        raise ValueError
    return states
