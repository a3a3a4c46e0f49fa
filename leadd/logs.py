"""Logging: one JSON object per line (or a console line), every value passed through `redact`.

Use `get_logger(__name__)` and log an event name with fields:

    log.info("lead.created", lead_id=lead_id, phone=phone)

The formatter masks phone numbers and e-mail addresses wherever they appear (message,
fields, tracebacks), so no caller can leak one by forgetting to mask.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

# E-mail: found from its at sign ("@", URL-encoded "%40", full-width "＠"), never by a pattern
# that can start anywhere: a scan from every position of a long base64 blob (all atext) is
# quadratic. The local part runs back from the at sign over RFC 5322 atext, dots, quotes and
# backslashes, and any non-ASCII character that is not a space (RFC 6531 allows them all), up
# to the previous at sign; a quoted local part ("jamie rivera"@) is taken whole. The domain
# runs forward over letters, digits, hyphens and any non-ASCII character (IDN), or is a
# bracketed literal. Generous on purpose: masking a neighbour's character is harmless.
_AT = re.compile(r"@|%40|＠|﹫")
_LOCAL_ASCII = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-.\\"
)
# A domain character: anything but ASCII punctuation other than "-", spaces and at signs.
_DOMAIN_CHAR = r"[^\x00-\x2c./:-@\[-`{-\x7f\s＠﹫]"
_DOMAIN = re.compile(rf"\[[^\]\s@]*\]|{_DOMAIN_CHAR}+(?:\.{_DOMAIN_CHAR}+)*")
_EMAIL_MASK = "***"
# +15125550123, 512-555-0123, (512) 555 0123, 5125550123, %2B15125550123 (URL-encoded), en
# dashes: 7+ characters of digits and separators. Not inside a word, a path or an identifier
# ("ord_1234567890", the last group of a UUID), but an extension may follow ("x12", "ext").
_PHONE = re.compile(
    r"(?<![\w/])(?<![0-9a-fA-F]{4}-)((?:\+|%2[Bb])?\d[\d\s().\-\u2010-\u2015\u2212]{5,}\d)"
    r"(?:(?!\w)|(?=x|ext|X|EXT))"
)
_PHONE_PREFIXES = ("+", "%2B", "%2b")
_SECRET_KEYS = ("token", "secret", "password", "api_key", "apikey", "authorization", "auth")


def mask_phone(value: str) -> str:
    """Keep the last 2 digits: "+15125550123" -> "+*********23"."""
    text = value.strip()
    prefix = next((p for p in _PHONE_PREFIXES if text.startswith(p)), "")
    digits = [c for c in text[len(prefix) :] if c.isdigit()]
    if len(digits) < 7:
        return value
    keep = "".join(digits[-2:])
    return f"{prefix}{'*' * (len(digits) - 2)}{keep}"


def mask_email(value: str) -> str:
    """ "jamie.rivera@example.com" -> "j***@example.com"; "x@example.com" -> "***@example.com"."""
    if "@" not in value and "%40" not in value and "＠" not in value and "﹫" not in value:
        return value
    out: list[str] = []
    done = 0  # value[:done] is copied or masked already
    boundary = 0  # a local part never reaches back past the previous at sign
    for at in _AT.finditer(value):
        start = _local_start(value, at.start(), boundary)
        boundary = at.end()
        domain = _DOMAIN.match(value, at.end())
        if start == at.start() or domain is None:
            continue
        local = value[start : at.start()]
        out.append(value[done:start])
        # One character is all of a local part; "***" is what a mask looks like (idempotent).
        out.append(_EMAIL_MASK if len(local) == 1 or local[0] == "*" else local[0] + _EMAIL_MASK)
        done = at.start()
    out.append(value[done:])
    return "".join(out)


def _local_start(value: str, at: int, boundary: int) -> int:
    """Where the local part ending at `at` starts (`at` itself if there is none)."""
    start = at
    if at > boundary and value[at - 1] == '"':
        # A quoted local part, spaces and escaped quotes included, back to its opening quote;
        # without one, the stray quote is masked with what precedes it.
        for opening in range(at - 2, boundary - 1, -1):
            char = value[opening]
            if char == "\n":
                break
            if char == '"' and not (opening > boundary and value[opening - 1] == "\\"):
                return opening
        start = at - 1
    while start > boundary and _is_local_char(value[start - 1]):
        start -= 1
    return start


def _is_local_char(char: str) -> bool:
    return char in _LOCAL_ASCII or (char > "\x7f" and not char.isspace() and char not in "＠﹫")


def redact(value: Any) -> Any:
    """Mask phones and e-mails inside any loggable value (strings, lists, dicts)."""
    if isinstance(value, str):
        value = mask_email(value)
        return _PHONE.sub(lambda m: _mask_phone_match(m.group(1)), value)
    if isinstance(value, Mapping):
        return {k: ("***" if _is_secret_key(str(k)) and v else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [redact(v) for v in value]
    return value


def _mask_phone_match(text: str) -> str:
    # Dates and UUID pieces look like digit runs; only mask things shaped like phones. With a
    # "+" the country code is there, so 7 digits are a whole number (Niue: +683 4002).
    prefixed = text.startswith(_PHONE_PREFIXES)
    digits = sum(c.isdigit() for c in (text[3:] if text[:1] == "%" else text))
    if digits > 15 or digits < (7 if prefixed else 10):
        return text
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", text):
        return text
    return mask_phone(text)


def _is_secret_key(key: str) -> bool:
    k = key.lower()
    return any(s in k for s in _SECRET_KEYS) and not k.endswith(("_id", "_sid_masked"))


class EventLogger:
    """A thin wrapper so every call site logs `event` plus structured fields."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, event: str, exc_info: Any = None, **fields: Any) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, exc_info=exc_info, extra={"fields": fields})

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, **fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, exc_info=True, **fields)


def get_logger(name: str) -> EventLogger:
    return EventLogger(logging.getLogger(name))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": redact(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(redact({k: _jsonable(v) for k, v in fields.items()}))
        if record.exc_info:
            out["traceback"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = dt.datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        # Redact the mapping as a whole so secret-named keys are masked here too.
        fields = redact(_jsonable(getattr(record, "fields", None) or {}))
        kv = " ".join(f"{k}={v}" for k, v in fields.items())
        line = (
            f"{ts} {record.levelname:<7} {record.name}: {redact(record.getMessage())} {kv}".rstrip()
        )
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


def _jsonable(v: Any) -> Any:
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set):
        return [_jsonable(x) for x in v]
    return str(v)


def setup(level: str = "info", fmt: str = "json", stream: Any = None) -> None:
    """Configure the root logger once (idempotent: replaces our handler)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_leadd", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._leadd = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log is replaced by our own request metrics/logging.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # chatty at INFO
