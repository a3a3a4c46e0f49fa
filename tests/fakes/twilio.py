"""A fake Twilio Messages API on a real local socket, for unit and end-to-end tests.

    async with FakeTwilio(account_sid="AC...", auth_token="tok") as fake:
        client = TwilioClient(session, base_url=fake.url, account_sid=fake.account_sid,
                              auth_token=fake.auth_token)
        ...
        assert fake.messages[0]["to"] == "+15125550123"

It speaks the wire format messaging.md documents (form POST, Basic auth, 201 + Message JSON,
classic `{code, message, more_info, status}` errors, the paged list with `next_page_uri`) so
the real client code runs unchanged. Knobs make it fail the way Twilio does: canned failures
(`fail_next`), opted-out and invalid recipients, a response delay, a barrier (`hold_create`)
that holds the answer to a created message until the test sets it, and failure storms
(`storm(...)` until `calm()`): 429s with or without Retry-After, JSON 500s, a proxy's HTML 503,
and the ambiguous "accepted, then answered 500" that reconciliation must resolve (also one at a
time: `fail_next(accept=True)`, and `hang_next` for a timeout that created nothing).
`wait_messages(n)` waits for messages to arrive.
`counts_by_recipient()` tells how many messages each phone received.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
import itertools
import json
import secrets
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import hdrs, web

from tests.fakes.base import FakeServer

API_VERSION = "2010-04-01"
MAX_PAGE_SIZE = 1000
# What a storm may answer (see FakeTwilio.storm). "500-accepted" records the message first,
# as when Twilio took it but the answer was lost: only reconciliation can tell.
STORM_KINDS = frozenset({"429", "429-bare", "500", "503-html", "500-accepted"})
PROXY_HTML_503 = (
    "<html><head><title>503 Service Temporarily Unavailable</title></head>"
    "<body><center><h1>503 Service Temporarily Unavailable</h1></center></body></html>"
)


@dataclass(frozen=True)
class _Canned:
    status: int
    body: str
    content_type: str
    headers: Mapping[str, str]
    accept: bool = False  # record the message first: Twilio took it, the answer says not
    hang: bool = False  # record nothing and never answer (until the server stops)


def _error_body(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(_error_body(status, code, message), status=status)


class FakeTwilio(FakeServer):
    """Records every created message in `messages`; answers like api.twilio.com.

    A created message is recorded *before* the `delay`, as if Twilio accepted it and only
    the response was slow: a client timeout then looks exactly like production's ambiguous
    case, which `find_sent` must resolve.
    """

    def __init__(
        self,
        *,
        account_sid: str = "AC" + "0" * 32,
        auth_token: str = "test-auth-token",
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: list[dict[str, Any]] = []
        self.opted_out: set[str] = set()
        self.invalid: set[str] = set()
        # One entry per GET on Messages.json: the query parameters as received.
        self.list_requests: list[dict[str, str]] = []
        # When set: a created message is recorded, then its answer waits for this event.
        self.hold_create: asyncio.Event | None = None
        self._canned: dict[str, deque[_Canned]] = {"POST": deque(), "GET": deque()}
        self._storm: dict[str, Iterator[str]] = {}
        self._storm_retry_after: float | None = None
        # How many answers storms gave, by kind ("POST 429", "GET 500", ...).
        self.storm_answers: Counter[str] = Counter()
        self._arrived = asyncio.Event()  # pulsed by every new message (wait_messages)

    # -- lifecycle ------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        path = f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json"
        app.router.add_post(path, self._create)
        app.router.add_get(path, self._list)

    # -- knobs ----------------------------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 429,
        code: int | None = 20429,
        retry_after: float | None = None,
        message: str | None = None,
        accept: bool = False,
    ) -> None:
        """Answer the next `n` create requests with a Twilio error (after auth succeeds).

        `code=None` answers with an HTML page instead, like a proxy in front of Twilio.
        `accept`: the message is created all the same (Twilio took it, then its answer failed):
        the ambiguous case only reconciliation can resolve.
        """
        text = message or ("Too Many Requests" if status == 429 else f"Simulated HTTP {status}")
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        if code is None:
            body, content_type = f"<html><body>{text}</body></html>", "text/html"
        else:
            body, content_type = json.dumps(_error_body(status, code, text)), "application/json"
        canned = _Canned(status, body, content_type, dict(headers), accept=accept)
        self._canned["POST"].extend([canned] * n)

    def hang_next(self, n: int = 1) -> None:
        """Leave the next `n` create requests unanswered, creating nothing: the client times
        out not knowing whether Twilio took the message (here it did not)."""
        self._canned["POST"].extend([_Canned(0, "", "", {}, hang=True)] * n)

    async def wait_messages(self, n: int) -> list[dict[str, Any]]:
        """Until Twilio holds at least `n` messages (created or seeded); returns them."""
        while len(self.messages) < n:
            self._arrived.clear()
            await self._arrived.wait()
        return self.messages

    def respond_next(
        self,
        n: int = 1,
        *,
        status: int,
        body: str,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
    ) -> None:
        """Answer the next `n` POSTs (create) or GETs (list) with exactly this response.

        For shapes `fail_next` does not make: camelCase errors, 2xx bodies without a sid,
        broken list pages. Nothing is recorded for a canned answer.
        """
        canned = _Canned(status, body, content_type, dict(headers or {}))
        self._canned[method.upper()].extend([canned] * n)

    def storm(
        self,
        kinds: Sequence[str] = ("429", "500", "503-html", "500-accepted"),
        *,
        retry_after: float | None = 1.0,
        lists: Sequence[str] = (),
    ) -> None:
        """Until `calm()`, answer every create with the next of `kinds`, in turn (after auth).

        "429" is Twilio's 20429 with `Retry-After: retry_after` (none when it is None),
        "429-bare" the same without the header, "500" a JSON 20500, "503-html" a proxy's HTML
        page, "500-accepted" records the message and then answers 500. `lists` does the same
        for the message list (GET) that reconciliation reads ("500" or "503-html").
        """
        unknown = (set(kinds) | set(lists)) - STORM_KINDS
        if unknown or not kinds:
            raise ValueError(f"storm kinds must be some of {sorted(STORM_KINDS)}: {unknown}")
        self._storm = {"POST": itertools.cycle(kinds)}
        if lists:
            self._storm["GET"] = itertools.cycle(lists)
        self._storm_retry_after = retry_after

    def calm(self, *, lists: bool = True) -> None:
        """End the storm: from now on requests are answered normally (creates only, while
        `lists=False` keeps the message list storming)."""
        self._storm = {} if lists else {k: v for k, v in self._storm.items() if k == "GET"}

    @property
    def storming(self) -> bool:
        return bool(self._storm)

    def counts_by_recipient(self) -> Counter[str]:
        """How many messages Twilio holds for each `To` (accepted ones, seeded ones too)."""
        return Counter(m["to"] for m in self.messages)

    def add_message(
        self,
        *,
        to: str,
        from_: str,
        body: str,
        date_created: dt.datetime | None = None,
        status_callback: str | None = None,
        queued: bool = False,
    ) -> dict[str, Any]:
        """Seed a message as if sent earlier (for reconciliation tests); returns the record.

        `queued`: still waiting in Twilio's per-sender queue, so `date_sent` is null and, as on
        Twilio, a `DateSent` filter does not return it."""
        created = (date_created or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        record = {
            "to": to,
            "from": from_,
            "body": body,
            "status_callback": status_callback,
            "sid": "SM" + secrets.token_hex(16),
            # Twilio's timestamps have one-second resolution.
            "date_created": created.replace(microsecond=0),
            "received_at": time.monotonic(),
            "queued": queued,
        }
        self.messages.append(record)
        self._arrived.set()
        return record

    # -- handlers -------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.StreamResponse:
        received_at = time.monotonic()
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        form = await request.post()
        to, from_, body = form.get("To"), form.get("From"), form.get("Body")
        if self._canned["POST"]:
            canned = self._canned["POST"][0]
            if canned.hang:
                self._canned["POST"].popleft()
                await self._wait_for(asyncio.Event())  # until the server stops
                return _error(503, 20503, "Service stopped")
            if canned.accept and isinstance(to, str) and isinstance(from_, str):
                self.add_message(to=to, from_=from_, body=str(body))["received_at"] = received_at
            return await self._answer_canned("POST")
        storm = self._storm.get("POST")
        if storm is not None:
            kind = next(storm)
            if kind == "500-accepted" and isinstance(to, str) and isinstance(from_, str):
                self.add_message(to=to, from_=from_, body=str(body))["received_at"] = received_at
            return await self._answer_storm("POST", kind)
        if not isinstance(to, str) or not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not isinstance(from_, str) or not from_:
            return _error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
        if not isinstance(body, str) or not body:
            return _error(400, 21602, "Message body is required.")
        if to in self.opted_out:
            await self._wait_delay()
            return _error(400, 21610, "Attempt to send to unsubscribed recipient")
        if to in self.invalid:
            await self._wait_delay()
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        callback = form.get("StatusCallback")
        record = self.add_message(
            to=to,
            from_=from_,
            body=body,
            status_callback=callback if isinstance(callback, str) else None,
        )
        record["received_at"] = received_at
        if self.hold_create is not None:
            await self._wait_for(self.hold_create)
        await self._wait_delay()
        return web.json_response(self._resource(record, status="queued"), status=201)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        query = request.query
        self.list_requests.append(dict(query))
        if self._canned["GET"]:
            return await self._answer_canned("GET")
        storm = self._storm.get("GET")
        if storm is not None:
            return await self._answer_storm("GET", next(storm))
        try:
            page_size = min(MAX_PAGE_SIZE, max(1, int(query.get("PageSize", "50"))))
            page = max(0, int(query.get("Page", "0")))
        except ValueError:
            return _error(400, 20001, "Invalid paging parameter")
        date_sent_from: dt.date | None = None
        if "DateSent>" in query:
            try:
                date_sent_from = dt.date.fromisoformat(query["DateSent>"])
            except ValueError:
                return _error(400, 20001, "Invalid DateSent> value")

        matches = [
            m
            for m in self.messages
            if ("To" not in query or m["to"] == query["To"])
            and ("From" not in query or m["from"] == query["From"])
            and (
                date_sent_from is None
                or (not m.get("queued") and m["date_created"].date() >= date_sent_from)
            )
        ]
        matches.sort(key=lambda m: m["date_created"], reverse=True)  # newest first, as Twilio
        chunk = matches[page * page_size : (page + 1) * page_size]
        filters = {k: v for k, v in query.items() if k not in ("Page", "PageSize", "PageToken")}

        def page_uri(n: int) -> str:
            params = {**filters, "PageSize": str(page_size), "Page": str(n)}
            if n > 0:
                params["PageToken"] = "PASM" + secrets.token_hex(16)
            return f"{request.path}?{urlencode(params)}"

        has_next = (page + 1) * page_size < len(matches)
        await self._wait_delay()
        return web.json_response(
            {
                "messages": [
                    self._resource(m, status="queued" if m.get("queued") else "delivered")
                    for m in chunk
                ],
                "end": page * page_size + max(0, len(chunk) - 1),
                "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(page + 1) if has_next else None,
                "page": page,
                "page_size": page_size,
                "previous_page_uri": page_uri(page - 1) if page > 0 else None,
                "start": page * page_size,
                "uri": request.path_qs,
            }
        )

    # -- helpers --------------------------------------------------------------------------

    def _check_auth(self, request: web.Request) -> web.Response | None:
        scheme, _, encoded = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        try:
            creds = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            creds = ""
        if scheme.lower() != "basic" or creds != f"{self.account_sid}:{self.auth_token}":
            return _error(401, 20003, "Authenticate")
        if request.match_info["account_sid"] != self.account_sid:
            return _error(404, 20404, "The requested resource was not found")
        return None

    async def _answer_canned(self, method: str) -> web.Response:
        canned = self._canned[method].popleft()
        await self._wait_delay()
        return web.Response(
            status=canned.status,
            text=canned.body,
            content_type=canned.content_type,
            headers=canned.headers,
        )

    async def _answer_storm(self, method: str, kind: str) -> web.Response:
        self.storm_answers[f"{method} {kind}"] += 1
        await self._wait_delay()
        if kind == "503-html":
            return web.Response(status=503, text=PROXY_HTML_503, content_type="text/html")
        if kind in ("429", "429-bare"):
            retry_after = self._storm_retry_after if kind == "429" else None
            response = _error(429, 20429, "Too Many Requests")
            if retry_after is not None:
                response.headers["Retry-After"] = f"{retry_after:g}"
            return response
        return _error(500, 20500, "Internal Server Error")

    def _resource(self, record: Mapping[str, Any], *, status: str) -> dict[str, Any]:
        created = email.utils.format_datetime(record["date_created"])
        sid = record["sid"]
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": record["body"],
            "date_created": created,
            "date_sent": None if status == "queued" else created,
            "date_updated": created,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": record["from"],
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": status,
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": record["to"],
            "uri": f"{uri}.json",
        }
