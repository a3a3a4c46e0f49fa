"""A fake Shopmonkey v3 API: a real aiohttp server on 127.0.0.1 with the real quirks.

The point of this fake is to be as unforgiving as the live API, which answers wrong
queries with HTTP 200 and wrong data: `$gte`, unknown fields/operators and camelCase
`orderBy` are silently ignored, `limit` is capped at 100, `offset`/`page` do nothing.
A client that passes against this fake sends the forms partners verified live.

    async with FakeShopmonkey(api_key="k") as fake:
        fake.add_order({...})
        client = ShopmonkeyClient(None, base_url=fake.url, api_key="k")
        ...
        assert fake.requests[-1].query["orderby"] == '{"createdDate":"asc"}'

Failure knobs: `fail_next(n, kind)` for the next n requests (any path), `storm(kinds)`
for every request until `calm()`, `down = True` for 503 on everything, `delay` seconds
before every answer, `ignore_filters = True` to drop every `where` as if the API had not
understood it. `on_request` is a hook called with each request before it is answered, to
change the data mid-paging. `served_customers()` returns every customer record the fake
handed out (fetched, or embedded in a listed order), so a test can look for leaks of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

FailureKind = Literal["429", "429-retry-after", "html403", "403", "500", "timeout"]
FAILURE_KINDS: frozenset[str] = frozenset(
    {"429", "429-retry-after", "html403", "403", "500", "timeout"}
)

MAX_LIMIT = 100
# Fields the fake filters and sorts on; anything else in `where`/`orderby` is ignored,
# as the live API ignores fields it does not know.
ORDER_FIELDS = frozenset(
    {
        "id",
        "number",
        "createdDate",
        "updatedDate",
        "orderCreatedDate",
        "customerId",
        "vehicleId",
        "locationId",
        "companyId",
        "workflowStatusId",
        "authorized",
        "invoiced",
        "paid",
        "archived",
        "deleted",
    }
)
RANGE_OPERATORS = frozenset({"gt", "gte", "lt", "lte"})

CLOUDFLARE_HTML_403 = (
    "<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head>"
    "<body><h1>Sorry, you have been blocked</h1><p>Cloudflare Ray ID: 8f0000000000</p>"
    "</body></html>"
)
CLOUDFLARE_HTML_429 = (
    "<!DOCTYPE html><html><head><title>Access denied | api.shopmonkey.cloud used "
    "Cloudflare to restrict access</title></head><body><h1>Error 1015</h1>"
    "<p>You are being rate limited</p></body></html>"
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received. `query` holds the decoded parameters (last value
    wins); `query_string` is the raw, still URL-encoded string."""

    method: str
    path: str
    query: dict[str, str]
    query_string: str
    authorization: str | None


class FakeShopmonkey:
    """See the module docstring. All stores are plain dicts that tests may edit directly."""

    def __init__(self, api_key: str = "k", *, hang_seconds: float = 5.0) -> None:
        self.api_key = api_key
        self.orders: dict[str, dict[str, Any]] = {}
        self.customers: dict[str, dict[str, Any]] = {}
        self.vehicles: dict[str, dict[str, Any]] = {}
        self.services: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[RecordedRequest] = []
        self.down = False
        self.ignore_filters = False
        self.hang_seconds = hang_seconds
        # Called with each recorded request before it is answered: lets a test change
        # the data between pages, as a live shop does while the poller is paging.
        self.on_request: Callable[[RecordedRequest], None] | None = None
        self._failures: deque[str] = deque()
        self._storm: Iterator[str] | None = None
        self.storm_answers: Counter[str] = Counter()  # kind -> answers given by storms
        self.delay = 0.0
        self._served_orders: set[str] = set()
        self._served_customers: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.port: int | None = None

    # -- lifecycle -----------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL including `/v3`, as the client's `base_url` expects."""
        if self.port is None:
            raise RuntimeError("FakeShopmonkey is not started")
        return f"http://127.0.0.1:{self.port}/v3"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/v3/order", self._list_orders)
        app.router.add_get("/v3/order/{id}", self._get_order)
        app.router.add_get("/v3/order/{id}/service", self._get_services)
        app.router.add_get("/v3/customer/{id}", self._get_customer)
        app.router.add_get("/v3/vehicle/{id}", self._get_vehicle)
        self._stopping.clear()
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host_port = self._runner.addresses[0]
        self.port = int(host_port[1])

    async def stop(self) -> None:
        # Release hanging "timeout" handlers first so cleanup does not wait on them.
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeShopmonkey:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- test helpers ----------------------------------------------------------------

    def add_order(self, order: dict[str, Any]) -> dict[str, Any]:
        self.orders[order["id"]] = order
        return order

    def add_customer(self, customer: dict[str, Any]) -> dict[str, Any]:
        self.customers[customer["id"]] = customer
        return customer

    def add_vehicle(self, vehicle: dict[str, Any]) -> dict[str, Any]:
        self.vehicles[vehicle["id"]] = vehicle
        return vehicle

    def add_service(self, order_id: str, service: dict[str, Any]) -> dict[str, Any]:
        self.services.setdefault(order_id, []).append(service)
        return service

    def fail_next(self, n: int = 1, kind: FailureKind = "429") -> None:
        """Make the next `n` requests fail with `kind`:

        - "429": Cloudflare-style HTML 429 with NO Retry-After
        - "429-retry-after": JSON 429 with `Retry-After: 1`
        - "html403": 403 text/html Cloudflare block page (edge throttling)
        - "403": 403 JSON, an under-scoped API key
        - "500": 500 JSON error
        - "timeout": hold the request for `hang_seconds`, then 504
        """
        if kind not in FAILURE_KINDS:
            raise ValueError(
                f"unknown failure kind {kind!r}; expected one of {sorted(FAILURE_KINDS)}"
            )
        self._failures.extend([kind] * n)

    def storm(self, kinds: Sequence[FailureKind] = ("html403", "429", "429-retry-after")) -> None:
        """Until `calm()`, answer every request (any path) with the next of `kinds` in turn."""
        unknown = set(kinds) - FAILURE_KINDS
        if unknown or not kinds:
            raise ValueError(f"storm kinds must be some of {sorted(FAILURE_KINDS)}: {unknown}")
        self._storm = itertools.cycle(kinds)

    def calm(self) -> None:
        self._storm = None

    def served_customers(self) -> list[dict[str, Any]]:
        """Customer records this fake answered with: fetched by id or embedded in an order."""
        out = [self.customers[c] for c in self._served_customers if c in self.customers]
        for oid in self._served_orders:
            embedded = self.orders.get(oid, {}).get("customer")
            if isinstance(embedded, dict):
                out.append(embedded)
        return out

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Requests whose path (without the /v3 prefix) equals `path`."""
        return [r for r in self.requests if r.path == "/v3" + path]

    # -- server internals ------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query={k: v for k, v in request.query.items()},
            query_string=request.query_string,
            authorization=request.headers.get("Authorization"),
        )
        self.requests.append(recorded)
        if self.on_request is not None:
            self.on_request(recorded)
        if self.down:
            return _error(503, "service_unavailable", "Service Unavailable")
        if self.delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.delay)
        if self._failures:
            return await self._failure(self._failures.popleft())
        if self._storm is not None:
            kind = next(self._storm)
            self.storm_answers[kind] += 1
            return await self._failure(kind)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "unauthorized", "Unauthorized")
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPNotFound:
            return _error(404, "not_found", "Not Found")
        return response

    async def _failure(self, kind: str) -> web.Response:
        if kind == "429":
            return web.Response(status=429, text=CLOUDFLARE_HTML_429, content_type="text/html")
        if kind == "429-retry-after":
            response = _error(429, "too_many_requests", "Too Many Requests")
            response.headers["Retry-After"] = "1"
            return response
        if kind == "html403":
            return web.Response(status=403, text=CLOUDFLARE_HTML_403, content_type="text/html")
        if kind == "403":
            return _error(403, "forbidden", "API key does not have permission for this resource")
        if kind == "500":
            return _error(500, "internal_error", "Internal Server Error")
        # "timeout": hold the request until the client gives up or the fake stops.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.hang_seconds)
        return _error(504, "gateway_timeout", "Gateway Timeout")

    async def _list_orders(self, request: web.Request) -> web.Response:
        rows = list(self.orders.values())
        where_raw = request.query.get("where")
        if where_raw is not None:
            try:
                where = json.loads(where_raw)
            except ValueError:
                return _error(400, "invalid_usage", "Invalid Usage: Unable to parse where")
            if isinstance(where, dict) and not self.ignore_filters:
                rows = [r for r in rows if _matches(r, where)]

        # Only lowercase `orderby` is read; aiohttp's query is case-sensitive, so a
        # camelCase `orderBy` is ignored exactly as the live API ignores it.
        orderby_raw = request.query.get("orderby")
        if orderby_raw is not None:
            try:
                orderby = json.loads(orderby_raw)
            except ValueError:
                orderby = None
            if not isinstance(orderby, dict):
                return _error(400, "invalid_usage", "Invalid Usage: Unable to parse orderby")
            rows = _sorted(rows, orderby)

        limit = _int_param(request.query.get("limit"), MAX_LIMIT)
        limit = MAX_LIMIT if limit <= 0 else min(limit, MAX_LIMIT)
        skip = max(0, _int_param(request.query.get("skip"), 0))
        page = rows[skip : skip + limit]
        self._served_orders.update(str(r.get("id")) for r in page)
        # include[customer]=true / include[vehicle]=true embed the relation in each row (null
        # when the order has none or it is unknown; a test's order that already carries one
        # keeps it); `include=` and `expand=` do nothing.
        embed = [
            (rel, store)
            for rel, store in (("customer", self.customers), ("vehicle", self.vehicles))
            if request.query.get(f"include[{rel}]") == "true"
        ]
        if embed:
            page = [
                {
                    **row,
                    **{
                        rel: row.get(rel) or store.get(str(row.get(f"{rel}Id")))
                        for rel, store in embed
                    },
                }
                for row in page
            ]
        return _ok(page, meta={"total": len(rows), "hasMore": skip + len(page) < len(rows)})

    async def _get_order(self, request: web.Request) -> web.Response:
        return _lookup(self.orders, request.match_info["id"], "Order")

    async def _get_customer(self, request: web.Request) -> web.Response:
        self._served_customers.add(request.match_info["id"])
        return _lookup(self.customers, request.match_info["id"], "Customer")

    async def _get_vehicle(self, request: web.Request) -> web.Response:
        return _lookup(self.vehicles, request.match_info["id"], "Vehicle")

    async def _get_services(self, request: web.Request) -> web.Response:
        order_id = request.match_info["id"]
        if order_id not in self.orders and order_id not in self.services:
            return _error(404, "not_found", "Order not found")
        return _ok(self.services.get(order_id, []))


def _ok(data: Any, meta: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"success": True, "data": data}
    if meta is not None:
        body["meta"] = meta
    return web.json_response(body)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {
            "success": False,
            "code": code,
            "message": message,
            "documentation_url": "https://shopmonkey.dev/overview",
        },
        status=status,
    )


def _lookup(store: dict[str, dict[str, Any]], key: str, what: str) -> web.Response:
    if key not in store:
        return _error(404, "not_found", f"{what} not found")
    return _ok(store[key])


def _int_param(value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        return default


def _matches(row: dict[str, Any], where: dict[str, Any]) -> bool:
    """Apply the conditions the live API understands; drop the rest silently."""
    for field, condition in where.items():
        if field not in ORDER_FIELDS:
            continue
        if not isinstance(condition, dict):
            if row.get(field) != condition:
                return False
            continue
        for op, operand in condition.items():
            # `$gte`, `eq`, `ne`, `like`, ... are not operators to Shopmonkey: ignored.
            if op in RANGE_OPERATORS:
                if not _compare(row.get(field), op, operand):
                    return False
            elif op == "contains":
                value = row.get(field)
                if not (isinstance(value, str) and str(operand).lower() in value.lower()):
                    return False
    return True


def _comparable(value: Any) -> Any:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value


def _compare(value: Any, op: str, operand: Any) -> bool:
    if value is None:
        return False
    left, right = _comparable(value), _comparable(operand)
    try:
        if op == "gt":
            return bool(left > right)
        if op == "gte":
            return bool(left >= right)
        if op == "lt":
            return bool(left < right)
        return bool(left <= right)
    except TypeError:
        return False


def _sort_key(field: str, row: dict[str, Any]) -> Any:
    return _comparable(row[field])


def _sorted(rows: list[dict[str, Any]], orderby: dict[str, Any]) -> list[dict[str, Any]]:
    # Stable sorts applied from the last key to the first give a multi-key ordering.
    for field, direction in reversed(list(orderby.items())):
        if field not in ORDER_FIELDS or direction not in ("asc", "desc"):
            continue
        present = [r for r in rows if r.get(field) is not None]
        missing = [r for r in rows if r.get(field) is None]
        present.sort(key=functools.partial(_sort_key, field), reverse=direction == "desc")
        rows = present + missing
    return rows
