"""Twilio Programmable Messaging over plain aiohttp: send an SMS, and find one after a crash.

No Twilio SDK at runtime: its async client pulls in `requests` and `aiohttp-retry`, retries on
its own (hiding 429s we want to see), and we need only two calls. What Twilio's codes, error
bodies and message pages mean is in twilio_wire.py; webhook signatures in twilio_signature.py.

`send_sms` never raises for provider or network trouble: it classifies the outcome into a
`SendResult` so the caller decides about retries in one place. It waits for the sender's
rate-limit slot first, then asks the caller's gate (opt-out, quiet hours...), then posts at
once, so nothing the caller checked can change during a wait. `find_sent` is the opposite:
reconciliation must never guess, so it raises `TwilioError` whenever it cannot be sure.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from leadd.backoff import Backoff, ThrottleBackoff
from leadd.logs import get_logger
from leadd.providers.result import Gate, SendResult, dry_run_result, parse_retry_after
from leadd.providers.twilio_wire import (
    OPT_OUT_CODES,
    THROTTLE_CODES,
    TwilioError,
    json_object,
    match_message,
    parse_error,
    reaches_before,
)
from leadd.ratelimit import RateLimiter

log = get_logger(__name__)

API_VERSION = "2010-04-01"
DEFAULT_BASE_URL = "https://api.twilio.com"
# The longest pause one answer may impose (Retry-After on a 429 or 5xx). Twilio's own 429s ask
# for seconds; a larger value (a proxy, a misconfiguration: 86400 was seen) would otherwise
# hold every lead's first SMS from this sender, and park the throttled send, for that long.
MAX_RETRY_AFTER = 60.0
# Without a Retry-After, a throttled sender pauses for an exponential delay in the number of
# throttles in a row (ThrottleBackoff), so a sustained 429 storm does not hammer Twilio. The cap
# is what a storm can still cost once it is over (the last pause runs out before the first
# send that succeeds): 10 s keeps that short while a throttled sender probes once per 10 s.
THROTTLE_BACKOFF = Backoff(base=1.0, cap=10.0, jitter=0.2)
# Reconciliation looks back this far before `since`: Twilio's date_created has one-second
# resolution and the daemon's clock may drift from Twilio's.
RECONCILE_SLACK = dt.timedelta(seconds=60)
RECONCILE_PAGE_SIZE = 50
# More pages than this for one (To, From, day) means something is wrong; refuse to guess.
MAX_RECONCILE_PAGES = 20


class TwilioClient:
    """One Twilio account. Paces each sender number on the client side.

    Twilio queues per sender at its MPS and fails anything queued longer than 10 hours, so
    we keep each `From` at `messages_per_second` ourselves: one RateLimiter per sender, and a
    429 pauses that sender's limiter (at most MAX_RETRY_AFTER) so all its in-flight
    coroutines back off together.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        messages_per_second: float = 1.0,
        timeout: float = 15.0,
    ) -> None:
        if messages_per_second <= 0:
            raise ValueError("messages_per_second must be positive")
        self._session = session
        self._owns_session = session is None
        self._base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._mps = messages_per_second
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limiters: dict[str, RateLimiter] = {}
        self._throttles: dict[str, ThrottleBackoff] = {}

    @property
    def dry_run(self) -> bool:
        """No credentials means no network: development and staging run end to end safely."""
        return not (self._account_sid and self._auth_token)

    @property
    def messages_url(self) -> str:
        return f"{self._base_url}/{API_VERSION}/Accounts/{self._account_sid}/Messages.json"

    async def close(self) -> None:
        """Close the session only if this client created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> TwilioClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def limiter(self, from_: str) -> RateLimiter:
        """The RateLimiter for one sender number, created on first use."""
        lim = self._limiters.get(from_)
        if lim is None:
            lim = self._limiters[from_] = RateLimiter(self._mps, max_pause=MAX_RETRY_AFTER)
        return lim

    def throttle(self, from_: str) -> ThrottleBackoff:
        """The throttle backoff of one sender number, created on first use."""
        return self._throttles.setdefault(from_, ThrottleBackoff(THROTTLE_BACKOFF))

    def paused_for(self, from_: str) -> float:
        """Seconds before this sender may send again (0.0 when not paused)."""
        return self.limiter(from_).paused_for()

    async def send_sms(
        self,
        *,
        to: str,
        from_: str,
        body: str,
        status_callback: str | None,
        gate: Gate | None = None,
    ) -> SendResult | None:
        """Create one outbound Message. Never raises for HTTP or network failures.

        Waits for the sender's slot, then awaits `gate()` and posts right after it: None
        (nothing sent) when the gate says no. The slot is taken first so that whatever the
        gate decides (a STOP, quiet hours, the cap) is decided after the wait, not before.

        A "retry" after a 5xx or a timeout may still have been accepted by Twilio (Messages
        create has no idempotency key): the caller should `find_sent` before resending.
        """
        if self.dry_run:
            if gate is not None and not await gate():
                return None
            result = dry_run_result()
            log.info("twilio.sms.dry_run", to=to, from_=from_, sid=result.provider_id)
            return result

        await self.limiter(from_).acquire()
        if gate is not None and not await gate():
            return None
        form = [("To", to), ("From", from_), ("Body", body)]
        if status_callback is not None:
            form.append(("StatusCallback", status_callback))

        session = self._get_session()
        sent_in = self.throttle(from_).round
        started = time.monotonic()
        try:
            async with session.post(
                self.messages_url,
                data=form,
                headers=self._headers(),
                timeout=self._timeout,
            ) as resp:
                text = await resp.text(errors="replace")
                latency = time.monotonic() - started
                result = self._classify(resp.status, resp.headers, text, latency, from_, sent_in)
        except TimeoutError:
            result = _transport_failure("timeout", "request timed out", started)
        except aiohttp.ClientError as exc:
            result = _transport_failure("connection", f"{type(exc).__name__}: {exc}", started)

        self._log_result(result, to=to, from_=from_)
        return result

    async def find_sent(
        self, *, to: str, from_: str, since: dt.datetime, body: str | None = None
    ) -> str | None:
        """The SID of a message we already sent to `to` from `from_` since `since`, or None.

        For reconciliation after a crash or an ambiguous failure: Twilio has no idempotency
        key, so before resending we ask whether the first attempt went through. Lists with
        `DateSent>=<UTC day of since - 60 s>`, follows `next_page_uri`, and matches
        `date_created >= since - 60 s` (and the exact body, when given).

        Raises TwilioError on any non-2xx, network error or unreadable page: the caller must
        retry the reconciliation later rather than assume "not sent" and send twice.
        """
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        if self.dry_run:
            return None
        since_utc = since.astimezone(dt.UTC)
        cutoff = since_utc - RECONCILE_SLACK
        base = {"To": to, "From": from_, "PageSize": str(RECONCILE_PAGE_SIZE)}
        # On the wire this is `DateSent%3E=2025-11-25`, which Twilio documents as
        # `DateSent>=2025-11-25` (the SDK's `date_sent_after`); day resolution only.
        sid = await self._scan(
            {**base, "DateSent>": cutoff.date().isoformat()}, to, from_, cutoff, body, False
        )
        if sid is None:
            # A message still waiting in Twilio's per-sender queue has no date_sent yet, so
            # the DateSent filter cannot return it. The unfiltered list is newest first: a
            # short scan down to the cutoff finds it without reading the whole history.
            sid = await self._scan(base, to, from_, cutoff, body, True)
        if sid is not None:
            log.info("twilio.reconcile.found", to=to, from_=from_, sid=sid)
        return sid

    async def _scan(
        self,
        params: dict[str, str] | None,
        to: str,
        from_: str,
        cutoff: dt.datetime,
        body: str | None,
        stop_at_cutoff: bool,
    ) -> str | None:
        url = self.messages_url
        for _ in range(MAX_RECONCILE_PAGES):
            page = await self._get_json(url, params)
            sid = match_message(page, to=to, from_=from_, cutoff=cutoff, body=body)
            if sid is not None:
                return sid
            if stop_at_cutoff and reaches_before(page, cutoff):
                return None
            next_uri = page.get("next_page_uri")
            if not next_uri:
                return None
            if not isinstance(next_uri, str) or not next_uri.startswith("/"):
                raise TwilioError(f"unexpected next_page_uri: {next_uri!r}")
            # next_page_uri is relative to the API host and already carries every filter.
            url, params = self._base_url + next_uri, None
        raise TwilioError(f"more than {MAX_RECONCILE_PAGES} pages of messages; refusing to guess")

    # -- internals ------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        # Built by hand: aiohttp 3.14 deprecates BasicAuth, and its replacement
        # (encode_basic_auth) does not exist in the older aiohttp versions we support.
        creds = f"{self._account_sid}:{self._auth_token}".encode()
        return {
            "Authorization": "Basic " + base64.b64encode(creds).decode("ascii"),
            "Accept": "application/json",
        }

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise RuntimeError("the aiohttp session passed to TwilioClient is closed")
            self._session = aiohttp.ClientSession()
        return self._session

    def _classify(
        self,
        status: int,
        headers: Mapping[str, str],
        text: str,
        latency: float,
        from_: str,
        sent_in: int,
    ) -> SendResult:
        if 200 <= status < 300:
            self.throttle(from_).accepted()
            data = json_object(text)
            sid = data.get("sid") if data else None
            if not isinstance(sid, str):
                # Accepted (and billed) but unreadable: report "sent" so nothing resends it.
                log.warning("twilio.sms.sent_without_sid", http_status=status)
                sid = None
            return SendResult("sent", sid, status, None, None, None, latency)

        code, message = parse_error(status, text)
        code_int = int(code) if code and code.isdigit() else None
        retry_after = parse_retry_after(headers.get("Retry-After"), time.time())
        if retry_after is not None:
            retry_after = min(retry_after, MAX_RETRY_AFTER)

        if code_int in OPT_OUT_CODES:
            return SendResult("failed", None, status, code, message, None, latency, opted_out=True)
        if status == 429 or code_int in THROTTLE_CODES:
            pause = retry_after
            if pause is None:
                pause = self.throttle(from_).throttled(sent_in, time.monotonic())
            if pause is not None:
                self.limiter(from_).pause(pause)
            return SendResult(
                "retry", None, status, code, message, retry_after, latency, throttled=True
            )
        if status >= 500:
            if retry_after is not None:
                self.limiter(from_).pause(retry_after)
            return SendResult("retry", None, status, code, message, retry_after, latency)
        return SendResult("failed", None, status, code, message, None, latency)

    async def _get_json(self, url: str, params: Mapping[str, str] | None) -> dict[str, Any]:
        session = self._get_session()
        try:
            async with session.get(
                url,
                params=params,
                headers=self._headers(),
                timeout=self._timeout,
            ) as resp:
                text = await resp.text(errors="replace")
                if not 200 <= resp.status < 300:
                    code, message = parse_error(resp.status, text)
                    raise TwilioError(
                        f"listing messages failed: HTTP {resp.status} {code}: {message}",
                        http_status=resp.status,
                        code=code,
                    )
        except TimeoutError as exc:
            raise TwilioError("listing messages timed out") from exc
        except aiohttp.ClientError as exc:
            raise TwilioError(f"listing messages failed: {type(exc).__name__}: {exc}") from exc
        page = json_object(text)
        if page is None or not isinstance(page.get("messages"), list):
            raise TwilioError("listing messages returned an unreadable page")
        return page

    @staticmethod
    def _log_result(result: SendResult, *, to: str, from_: str) -> None:
        fields: dict[str, Any] = {
            "to": to,
            "from_": from_,
            "http_status": result.http_status,
            "latency": round(result.latency, 3),
        }
        if result.outcome == "sent":
            log.info("twilio.sms.sent", sid=result.provider_id, **fields)
        elif result.outcome == "retry":
            log.warning(
                "twilio.sms.retry",
                error_code=result.error_code,
                error_message=result.error_message,
                retry_after=result.retry_after,
                **fields,
            )
        else:
            log.warning(
                "twilio.sms.failed",
                error_code=result.error_code,
                error_message=result.error_message,
                opted_out=result.opted_out,
                **fields,
            )


def _transport_failure(code: str, message: str, started: float) -> SendResult:
    return SendResult("retry", None, None, code, message, None, time.monotonic() - started)


__all__ = ["MAX_RETRY_AFTER", "THROTTLE_BACKOFF", "TwilioClient"]
