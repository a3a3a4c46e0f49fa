"""The one answer every provider client gives: what happened to a send, in terms callers act on.

Callers never look at HTTP statuses or provider error codes to decide what to do next; they
branch on `outcome` ("sent" / "retry" / "failed") and read the rest for logs, metrics and the
touch-point record. Keeping this in its own module lets the SMS and e-mail clients (and the
code that schedules retries) agree on one shape without importing each other.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["sent", "retry", "failed"]

# The caller's last word on a send, awaited by the client after every wait (rate limit,
# server-requested pause) and immediately before the request: False means "do not send".
Gate = Callable[[], Awaitable[bool]]

DRY_RUN_PREFIX = "DRY"


@dataclass(frozen=True)
class SendResult:
    """The result of one send attempt.

    outcome:
        "sent": the provider accepted the message (not necessarily delivered yet).
        "retry": transient (429, 5xx, timeout, connection error); safe to try again later,
            after `retry_after` when set. A 5xx or a timeout may still have gone through:
            the caller reconciles (Twilio `find_sent`) or dedupes (SendGrid custom_args).
        "failed": permanent for this message; do not retry it unchanged.
    provider_id: Twilio Message SID ("SM...") or SendGrid X-Message-Id; "DRY..." in dry-run.
    error_code: Twilio's numeric code as a string ("21610"); "http_<status>" when the
        provider gave none (always for SendGrid); "timeout" / "connection" for transport errors.
    retry_after: seconds, only when the provider said so (Retry-After, X-RateLimit-Reset).
    latency: seconds spent on the HTTP call itself (not on client-side rate limiting).
    opted_out: Twilio 21610, the recipient unsubscribed at the carrier/Twilio level; the
        caller must record the opt-out, not just fail the message.
    throttled: a "retry" because the provider said "slow down" (429, Twilio 20429/21611): it
        took nothing, and the client has paused the sender (`paused_for`); the caller sends
        again once that pause is over.
    """

    outcome: Outcome
    provider_id: str | None
    http_status: int | None
    error_code: str | None
    error_message: str | None
    retry_after: float | None
    latency: float
    dry_run: bool = False
    opted_out: bool = False
    throttled: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome == "sent"


def dry_run_id() -> str:
    """A provider id that cannot collide with a real one: "DRY" + 32 hex characters."""
    return DRY_RUN_PREFIX + secrets.token_hex(16)


def dry_run_result() -> SendResult:
    """What a client returns instead of calling the provider when it has no credentials."""
    return SendResult(
        outcome="sent",
        provider_id=dry_run_id(),
        http_status=None,
        error_code=None,
        error_message=None,
        retry_after=None,
        latency=0.0,
        dry_run=True,
    )


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP-date (RFC 9110).

    `now` is the current Unix time. Returns None when absent or unparsable (the caller then
    falls back to its own backoff), and never a negative delay.
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive result means "-0000".
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - now)
