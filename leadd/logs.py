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

_EMAIL = re.compile(r"([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*)")
# +15125550123, 512-555-0123, (512) 555 0123, 5125550123: 10+ digits with separators.
_PHONE = re.compile(r"(?<![\w/])(\+?\d[\d\s().\-]{8,}\d)(?![\w])")
_SECRET_KEYS = ("token", "secret", "password", "api_key", "apikey", "authorization", "auth")


def mask_phone(value: str) -> str:
    """Keep the last 2 digits: "+15125550123" -> "+*********23"."""
    digits = [c for c in value if c.isdigit()]
    if len(digits) < 7:
        return value
    keep = "".join(digits[-2:])
    prefix = "+" if value.strip().startswith("+") else ""
    return f"{prefix}{'*' * (len(digits) - 2)}{keep}"


def mask_email(value: str) -> str:
    """ "jamie.rivera@example.com" -> "j***@example.com"."""
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", value)


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
    # Dates and UUID pieces look like digit runs; only mask things shaped like phones.
    digits = sum(c.isdigit() for c in text)
    if digits < 10 or digits > 15 or re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", text):
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
