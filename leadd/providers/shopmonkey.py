"""Shopmonkey API v3 client: orders, customers, vehicles and services, read with retries.

Shopmonkey fails quietly: a wrong filter operator, camelCase `orderBy`, `limit` > 100
or `offset` all return HTTP 200 with the wrong rows. This client sends only the forms
partners verified against the live API (`where` without `$`, lowercase `orderby`,
`skip` paging) and then checks the rows it got back, so a dropped filter surfaces as
`ShopmonkeyFilterIgnored` instead of the daemon ingesting the whole order table.

Throttling comes from two places: the API itself and a Cloudflare edge that answers
429 without `Retry-After`, or an HTML 403 challenge page. Both are treated as "slow
down": every caller of the client is paused through the shared `RateLimiter`, and the
request is retried with `Retry-After` or jittered exponential backoff.

Webhook signatures are in `shopmonkey_webhook`; reading the customers and vehicles this client
returns (primary phone, model year) is intake's boundary (`leadd.intake.coerce`).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import aiohttp

from leadd import metrics
from leadd.backoff import Backoff
from leadd.logs import get_logger
from leadd.ratelimit import NORMAL, URGENT, RateLimiter

log = get_logger(__name__)

# List rows embed these relations when asked (`include=` and `expand=` do not work).
INCLUDE_RELATIONS = {"include[customer]": "true", "include[vehicle]": "true"}
# The API silently caps `limit` at 100; asking for more only hides the cap.
MAX_PAGE_SIZE = 100
# A safety net for a paging loop that never sees a short page (e.g. `skip` ignored):
# 100 pages x 100 rows is far more than any poll interval produces.
MAX_PAGES = 100
# Retry-After from the server is honoured, but never beyond this, so one bad header
# cannot park the poll loop for hours.
MAX_RETRY_AFTER = 600.0

SleepFn = Callable[[float], Awaitable[Any]]


class ShopmonkeyError(Exception):
    """Any failure talking to Shopmonkey; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ShopmonkeyAuthError(ShopmonkeyError):
    """401, or 403 with a JSON body: the key is wrong or lacks a scope. Never retried:
    retrying cannot fix a key, and hammering with a bad key risks a ban."""


def auth_problem(exc: ShopmonkeyAuthError) -> str:
    """The rejected key in words for /readyz: the status, never the path (it names a
    customer or order) or what the API said (the log has both)."""
    return (
        f"authentication failed: HTTP {exc.status} "
        "(the API key is missing, invalid or lacks a scope; details in the log)"
    )


class ShopmonkeyUnavailable(ShopmonkeyError):
    """Retries exhausted on throttling (429, HTML 403), 5xx, timeouts or connection errors."""


class ShopmonkeyFilterIgnored(ShopmonkeyError):
    """The API returned rows outside the filter we sent: it silently dropped the filter.

    Raised instead of returning the rows, because processing an unfiltered table dump
    would contact every past customer as a new lead.
    """


class ShopmonkeyClient:
    """Async client for the few Shopmonkey v3 endpoints leadd needs.

    `session` may be shared with the rest of the daemon; when None the client opens
    its own and closes it in `close()` (or on leaving `async with`). `limiter` lets
    several clients using the same API key share one budget; by default the client
    has its own at `requests_per_second`. `sleep` is injectable so tests can record
    retry delays instead of waiting them out.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        *,
        base_url: str,
        api_key: str,
        requests_per_second: float = 2.0,
        timeout: float = 30.0,
        max_attempts: int = 6,
        backoff: Backoff = Backoff(base=1, cap=120),  # noqa: B008 - frozen dataclass
        sleep: SleepFn = asyncio.sleep,
        limiter: RateLimiter | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._session = session
        self._owns_session = session is None
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._sleep = sleep
        self.limiter = limiter or RateLimiter(requests_per_second)
        self.last_auth_error: str | None = None

    @property
    def enabled(self) -> bool:
        """False when no API key is configured: the daemon then runs webhook-only."""
        return bool(self._api_key)

    async def __aenter__(self) -> ShopmonkeyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client created it; a shared session is left alone."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- public reads --------------------------------------------------------------

    async def list_orders(
        self,
        *,
        field: Literal["createdDate", "updatedDate"],
        since: datetime,
        page_size: int = 100,
    ) -> list[dict[str, Any]]:
        """Orders whose `field` is at or after `since`, oldest first, de-duplicated by id.

        Raises ShopmonkeyFilterIgnored when any row fails the filter, and ShopmonkeyError
        when paging runs past MAX_PAGES.
        """
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        limit = min(page_size, MAX_PAGE_SIZE)
        sent = _iso_ms(since)
        # Compare rows against what we actually sent (truncated to milliseconds), so a
        # row in the truncated sub-millisecond gap is not mistaken for a dropped filter.
        floor = since.astimezone(UTC).replace(microsecond=since.microsecond // 1000 * 1000)
        where = json.dumps({field: {"gte": sent}}, separators=(",", ":"))
        orderby = json.dumps({field: "asc"}, separators=(",", ":"))

        orders: dict[str, dict[str, Any]] = {}
        skip = 0
        for _page in range(MAX_PAGES):
            envelope = await self._get_envelope(
                "/order",
                # Rows carry their customer and vehicle: a polled lead needs no customer call.
                params={"where": where, "orderby": orderby, "limit": str(limit)}
                | {"skip": str(skip)}
                | INCLUDE_RELATIONS,
                priority=URGENT,  # the orders the webhook missed: leads not yet answered
            )
            assert envelope is not None
            rows = envelope.get("data")
            if not isinstance(rows, list):
                raise ShopmonkeyError("GET /order: expected a list in 'data'")
            for row in rows:
                _check_row(row, field, floor, sent)
                # A row without a usable id still reaches the poller, whose validation
                # records and skips it: failing the page would stop polling at it forever.
                oid = row.get("id")
                orders.setdefault(oid if isinstance(oid, str) else f"#{skip}:{len(orders)}", row)
            meta = envelope.get("meta")
            has_more = meta.get("hasMore") if isinstance(meta, dict) else None
            if has_more is False or len(rows) < limit:
                log.debug("shopmonkey.orders_listed", field=field, since=sent, count=len(orders))
                return list(orders.values())
            skip += len(rows)
        log.error("shopmonkey.paging_runaway", field=field, since=sent, pages=MAX_PAGES)
        raise ShopmonkeyError(
            f"GET /order: still more rows after {MAX_PAGES} pages of {limit}; "
            "refusing to page further (is `skip` being ignored?)"
        )

    async def get_order(self, order_id: str) -> dict[str, Any] | None:
        """The order, or None if Shopmonkey has no such id."""
        return await self._get_object(f"/order/{_segment(order_id)}")

    async def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        """The customer with its `emails[]` and `phoneNumbers[]`, or None if unknown. Urgent:
        the lead's acknowledgement waits for it."""
        return await self._get_object(f"/customer/{_segment(customer_id)}", priority=URGENT)

    async def get_vehicle(self, vehicle_id: str) -> dict[str, Any] | None:
        """The vehicle, or None if unknown."""
        return await self._get_object(f"/vehicle/{_segment(vehicle_id)}")

    async def get_order_services(self, order_id: str) -> list[dict[str, Any]]:
        """The order's services (not embedded in the order itself); [] if the order is unknown."""
        path = f"/order/{_segment(order_id)}/service"
        envelope = await self._get_envelope(path, allow_404=True)
        if envelope is None:
            return []
        data = envelope.get("data")
        if not isinstance(data, list):
            raise ShopmonkeyError(f"GET {path}: expected a list in 'data'")
        return data

    # -- transport -----------------------------------------------------------------

    async def _get_object(self, path: str, *, priority: int = NORMAL) -> dict[str, Any] | None:
        envelope = await self._get_envelope(path, allow_404=True, priority=priority)
        if envelope is None:
            return None
        data = envelope.get("data")
        if not isinstance(data, dict):
            raise ShopmonkeyError(f"GET {path}: expected an object in 'data'")
        return data

    async def _get_envelope(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        allow_404: bool = False,
        priority: int = NORMAL,
    ) -> dict[str, Any] | None:
        """GET with throttling and retries; the `{success, data, meta}` envelope, or None
        on 404 when `allow_404`. The budget is shared: `priority` says who goes first."""
        url = self.base_url + path
        for attempt in range(self.max_attempts):
            await self.limiter.acquire(priority)
            try:
                status, headers, text = await self._send(url, params)
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
                reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                metrics.PROVIDER_RETRIES.labels("shopmonkey", "transport").inc()
                await self._retry_wait(path, attempt, reason, None, pause=False)
                continue

            body = _json_or_none(text)
            if status == 401 or (status == 403 and body is not None):
                raise self._auth_error(path, status, body)
            if status == 429 or status == 403 or status >= 500:
                # 403 here has a non-JSON body: a Cloudflare/WAF page, i.e. edge throttling.
                throttled = status in (429, 403)
                retry_after = _retry_after(headers.get("Retry-After")) if throttled else None
                kind = "throttled" if throttled else "server"
                metrics.PROVIDER_RETRIES.labels("shopmonkey", kind).inc()
                await self._retry_wait(path, attempt, f"HTTP {status}", retry_after, throttled)
                continue

            # Any other answer proves the key works.
            self.last_auth_error = None
            if status == 404 and allow_404:
                return None
            if not isinstance(body, dict):
                raise ShopmonkeyError(
                    f"GET {path}: HTTP {status} with a non-JSON body", status=status
                )
            if status >= 400 or body.get("success") is False:
                message = body.get("message") or body.get("code") or "unknown error"
                raise ShopmonkeyError(f"GET {path}: HTTP {status}: {message}", status=status)
            return body
        raise AssertionError("unreachable: _retry_wait raises on the last attempt")

    async def _send(
        self, url: str, params: Mapping[str, str] | None
    ) -> tuple[int, Mapping[str, str], str]:
        session = self._session
        if session is None:
            session = self._session = aiohttp.ClientSession()
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        async with session.get(url, params=params, headers=headers, timeout=self._timeout) as resp:
            text = await resp.text(errors="replace")
            return resp.status, resp.headers, text

    async def _retry_wait(
        self, path: str, attempt: int, reason: str, retry_after: float | None, pause: bool
    ) -> None:
        """Wait before the next attempt, or raise ShopmonkeyUnavailable after the last one."""
        if attempt + 1 >= self.max_attempts:
            log.error(
                "shopmonkey.unavailable", path=path, reason=reason, attempts=self.max_attempts
            )
            raise ShopmonkeyUnavailable(
                f"GET {path}: giving up after {self.max_attempts} attempts ({reason})"
            )
        delay = retry_after if retry_after is not None else self.backoff.delay(attempt)
        if pause:
            # Throttling is per key: hold back every caller of this client, not just us.
            self.limiter.pause(delay)
        log.warning(
            "shopmonkey.retry", path=path, reason=reason, attempt=attempt + 1, delay=round(delay, 3)
        )
        await self._sleep(delay)

    def _auth_error(self, path: str, status: int, body: Any) -> ShopmonkeyAuthError:
        api_message = None
        if isinstance(body, dict):
            api_message = body.get("message") or body.get("code")
        api_message = api_message or "no message"
        if status == 401:
            hint = "the API key is missing or invalid"
        else:
            hint = "the API key lacks permission for this resource"
        message = (
            f"Shopmonkey rejected the API key on GET {path}: HTTP {status} {api_message} ({hint})"
        )
        self.last_auth_error = message
        log.error("shopmonkey.auth_failed", path=path, status=status, api_message=api_message)
        return ShopmonkeyAuthError(message, status=status)


def _segment(value: str) -> str:
    """Quote an id for a path segment: ids arrive from webhooks, so never trust them."""
    if not value:
        raise ValueError("id must be non-empty")
    return quote(str(value), safe="")


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text, parse_int=_parse_int)
    except ValueError:
        return None


def _parse_int(digits: str) -> int | float:
    # One number longer than Python converts (4,300 digits) must not make the whole page
    # unreadable, which would stop polling at it forever: it becomes infinity, which order
    # validation refuses for that one order.
    return int(digits) if len(digits) <= 4000 else float("inf")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def _iso_ms(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and `Z`, the form Shopmonkey stores."""
    if value.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _check_row(row: Any, field: str, floor: datetime, sent: str) -> None:
    if not isinstance(row, dict):
        raise ShopmonkeyError("GET /order: a row is not an object")
    value = _parse_iso(row.get(field))
    if value is None or value < floor:
        log.error(
            "shopmonkey.filter_ignored",
            field=field,
            since=sent,
            order_id=row.get("id"),
            value=row.get(field),
        )
        raise ShopmonkeyFilterIgnored(
            f"GET /order returned order {row.get('id')!r:.80} with {field}={row.get(field)!r:.80}, "
            f"outside the filter {field} >= {sent}: the API ignored the filter"
        )
