"""SendGrid v3 Mail Send over plain aiohttp, and the signed Event Webhook check.

The `sendgrid` package is synchronous (urllib under the hood) and would block the event loop,
so we build the small JSON body by hand and POST it ourselves (messaging.md §7, §9). The
webhook signature is verified with `cryptography` directly on the raw request bytes: the
signature covers the exact body, trailing CRLF included, so it must be checked before any
JSON parsing (messaging.md §8).

Like the Twilio client, `send_email` never raises for HTTP or network trouble; it returns a
`SendResult` whose `outcome` the caller branches on.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from leadd.logs import get_logger
from leadd.providers.result import Gate, SendResult, dry_run_result, parse_retry_after
from leadd.ratelimit import RateLimiter

log = get_logger(__name__)

DEFAULT_BASE_URL = "https://api.sendgrid.com"
MAIL_SEND_PATH = "/v3/mail/send"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

# Mail Send's own limit is undocumented and very high; this only bounds bursts so that a 429
# can pause every coroutine of the client at once (RateLimiter.pause).
DEFAULT_REQUESTS_PER_SECOND = 50.0
# A 429 without any reset header still pauses the client this long.
DEFAULT_THROTTLE_PAUSE = 1.0
# The longest pause one 429 may impose on every e-mail: a reset header a day away (a proxy, a
# misconfigured account) must not hold all mail for a day. The send is retried after it.
MAX_PAUSE = 60.0
_MAX_ERROR_TEXT = 300


class SendGridClient:
    """One SendGrid API key and one verified sender identity."""

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        *,
        base_url: str,
        api_key: str,
        from_email: str,
        from_name: str,
        timeout: float = 15.0,
        requests_per_second: float = DEFAULT_REQUESTS_PER_SECOND,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._api_key = api_key
        self._from_email = from_email
        self._from_name = from_name
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limiter = RateLimiter(
            requests_per_second, burst=requests_per_second, max_pause=MAX_PAUSE
        )

    def paused_for(self) -> float:
        """Seconds every send still waits because of a 429 (0.0 when not paused)."""
        return self._limiter.paused_for()

    @property
    def dry_run(self) -> bool:
        """No API key means no network: development and staging run end to end safely."""
        return not self._api_key

    @property
    def send_url(self) -> str:
        return self._base_url + MAIL_SEND_PATH

    async def close(self) -> None:
        """Close the session only if this client created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> SendGridClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def build_body(
        self,
        *,
        to: str,
        to_name: str | None,
        subject: str,
        text: str,
        html: str | None,
        custom_args: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The /v3/mail/send JSON: one personalization, so X-Message-Id maps to one recipient.

        custom_args go on the personalization and come back as top-level keys of every event,
        which is how webhook events find their touch point. SendGrid rejects non-string
        values, so they are coerced, and rejects empty ones with a permanent 400, so None and
        "" are dropped rather than losing the whole e-mail. text/plain must precede text/html.
        """
        recipient: dict[str, str] = {"email": to}
        if to_name:
            recipient["name"] = to_name
        personalization: dict[str, Any] = {"to": [recipient]}
        args = {str(k): str(v) for k, v in custom_args.items() if v is not None and str(v)}
        if args:
            personalization["custom_args"] = args
        sender: dict[str, str] = {"email": self._from_email}
        if self._from_name:
            sender["name"] = self._from_name
        content = [{"type": "text/plain", "value": text}]
        if html is not None:
            content.append({"type": "text/html", "value": html})
        body: dict[str, Any] = {
            "from": sender,
            "subject": subject,
            "personalizations": [personalization],
            "content": content,
        }
        if headers:
            body["headers"] = {str(k): str(v) for k, v in headers.items()}
        return body

    async def send_email(
        self,
        *,
        to: str,
        to_name: str | None,
        subject: str,
        text: str,
        html: str | None,
        custom_args: Mapping[str, str],
        headers: Mapping[str, str] | None = None,
        gate: Gate | None = None,
    ) -> SendResult | None:
        """Send one e-mail. Never raises for HTTP or network failures. Like Twilio's
        `send_sms`: waits for a slot, then `gate()` (None when it says no), then posts.

        Mail Send has no idempotency key, so a "retry" after a 5xx or a timeout can deliver
        twice; callers put a stable id in `custom_args` and dedupe on the event side.
        """
        if self.dry_run:
            if gate is not None and not await gate():
                return None
            result = dry_run_result()
            log.info("sendgrid.mail.dry_run", to=to, message_id=result.provider_id)
            return result

        body = self.build_body(
            to=to,
            to_name=to_name,
            subject=subject,
            text=text,
            html=html,
            custom_args=custom_args,
            headers=headers,
        )
        await self._limiter.acquire()
        if gate is not None and not await gate():
            return None
        session = self._get_session()
        started = time.monotonic()
        try:
            async with session.post(
                self.send_url,
                data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
                headers={
                    "Authorization": f"Bearer {self._api_key}",
                    "Content-Type": "application/json",
                    "Accept": "application/json",  # a missing Accept can give 406
                },
                timeout=self._timeout,
            ) as resp:
                resp_text = await resp.text(errors="replace")
                latency = time.monotonic() - started
                result = self._classify(resp.status, resp.headers, resp_text, latency)
        except TimeoutError:
            result = _transport_failure("timeout", "request timed out", started)
        except aiohttp.ClientError as exc:
            result = _transport_failure("connection", f"{type(exc).__name__}: {exc}", started)

        _log_result(result, to=to)
        return result

    # -- internals ------------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise RuntimeError("the aiohttp session passed to SendGridClient is closed")
            self._session = aiohttp.ClientSession()
        return self._session

    def _classify(
        self, status: int, headers: Mapping[str, str], text: str, latency: float
    ) -> SendResult:
        # 202 is queued; 200 only happens in sandbox mode (valid, not queued): still "sent",
        # there is nothing to retry.
        if 200 <= status < 300:
            return SendResult(
                "sent", headers.get("X-Message-Id"), status, None, None, None, latency
            )
        code = f"http_{status}"
        message = first_error_message(text)
        if status == 429:
            retry_after = _rate_limit_reset(headers, time.time())
            self._limiter.pause(retry_after if retry_after is not None else DEFAULT_THROTTLE_PAUSE)
            return SendResult(
                "retry", None, status, code, message, retry_after, latency, throttled=True
            )
        if status >= 500:
            retry_after = parse_retry_after(headers.get("Retry-After"), time.time())
            return SendResult("retry", None, status, code, message, retry_after, latency)
        # 400 validation, 401 key, 403 unverified sender, 413 size, 415 encoding: permanent.
        return SendResult("failed", None, status, code, message, None, latency)


def first_error_message(text: str) -> str | None:
    """The first `errors[].message` of a SendGrid error body; the raw text if not JSON."""
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:_MAX_ERROR_TEXT] or None
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list):
            for err in errors:
                if isinstance(err, dict) and isinstance(err.get("message"), str):
                    return str(err["message"])
    return None


def verify_event_signature(
    public_key_b64: str, payload: bytes, signature_b64: str, timestamp: str
) -> bool:
    """True when `signature_b64` is SendGrid's ECDSA-SHA256 signature of timestamp + payload.

    `public_key_b64` is the base64 DER SubjectPublicKeyInfo from the Event Webhook settings
    (PEM armour and line breaks are tolerated). `payload` must be the raw request body bytes.
    Any malformed input gives False, never an exception: a webhook handler answers 403.
    """
    if not (public_key_b64 and signature_b64 and timestamp):
        return False
    key = _load_public_key(public_key_b64)
    if key is None:
        return False
    try:
        signature = base64.b64decode("".join(signature_b64.split()), validate=True)
        key.verify(signature, timestamp.encode("utf-8") + payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, TypeError, UnicodeError):
        return False
    return True


@functools.lru_cache(maxsize=8)
def _load_public_key(public_key_b64: str) -> ec.EllipticCurvePublicKey | None:
    """Parse once per key: every webhook POST is verified with the same few keys."""
    lines = [ln for ln in public_key_b64.strip().splitlines() if not ln.startswith("-----")]
    try:
        der = base64.b64decode("".join("".join(lines).split()), validate=True)
        key = load_der_public_key(der)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return key if isinstance(key, ec.EllipticCurvePublicKey) else None


def _rate_limit_reset(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds until `X-RateLimit-Reset` (Unix epoch seconds), else from `Retry-After`."""
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            pass
    return parse_retry_after(headers.get("Retry-After"), now)


def _transport_failure(code: str, message: str, started: float) -> SendResult:
    return SendResult("retry", None, None, code, message, None, time.monotonic() - started)


def _log_result(result: SendResult, *, to: str) -> None:
    fields: dict[str, Any] = {
        "to": to,
        "http_status": result.http_status,
        "latency": round(result.latency, 3),
    }
    if result.outcome == "sent":
        log.info("sendgrid.mail.sent", message_id=result.provider_id, **fields)
    else:
        log.warning(
            f"sendgrid.mail.{result.outcome}",
            error_code=result.error_code,
            error_message=result.error_message,
            retry_after=result.retry_after,
            **fields,
        )


__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SendGridClient",
    "first_error_message",
    "verify_event_signature",
]
