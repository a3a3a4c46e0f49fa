"""ShopmonkeyClient against FakeShopmonkey over real sockets.

Retry waits go through an injected sleep that records the delay and advances a fake
clock shared with the client's RateLimiter, so backoff and Retry-After are asserted
exactly without the tests waiting them out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest

from leadd.backoff import Backoff
from leadd.providers.shopmonkey import (
    ShopmonkeyAuthError,
    ShopmonkeyClient,
    ShopmonkeyError,
    ShopmonkeyFilterIgnored,
    ShopmonkeyUnavailable,
)
from leadd.ratelimit import RateLimiter
from tests.fakes.shopmonkey import FakeShopmonkey, RecordedRequest

SINCE = datetime(2025, 11, 25, 14, 0, tzinfo=UTC)
NO_JITTER = Backoff(base=0.5, cap=4, jitter=0.0)


class FakeTime:
    """Real monotonic time plus an offset that recorded sleeps advance.

    Real time keeps flowing so the token bucket still refills; the offset lets a
    limiter `pause()` expire as soon as the client has "slept" through it.
    """

    def __init__(self) -> None:
        self.offset = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return time.monotonic() + self.offset

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.offset += seconds
        await asyncio.sleep(0)


class SpyLimiter(RateLimiter):
    """A RateLimiter that records `pause()` calls."""

    def __init__(self, clock: FakeTime) -> None:
        super().__init__(rate=1000.0, burst=1000.0, clock=clock.now)
        self.pauses: list[float] = []

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        super().pause(seconds)


def _order(n: int, created: datetime, **extra: Any) -> dict[str, Any]:
    stamp = created.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {
        "id": f"order-{n:04d}",
        "number": 1000 + n,
        "createdDate": stamp,
        "updatedDate": stamp,
        "customerId": f"cust-{n}",
        "vehicleId": f"veh-{n}",
        **extra,
    }


@pytest.fixture
async def fake() -> AsyncIterator[FakeShopmonkey]:
    async with FakeShopmonkey(api_key="k") as server:
        yield server


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def limiter(clock: FakeTime) -> SpyLimiter:
    return SpyLimiter(clock)


@pytest.fixture
async def client(
    fake: FakeShopmonkey, clock: FakeTime, limiter: SpyLimiter
) -> AsyncIterator[ShopmonkeyClient]:
    async with ShopmonkeyClient(
        None,
        base_url=fake.url,
        api_key="k",
        timeout=2.0,
        max_attempts=4,
        backoff=NO_JITTER,
        sleep=clock.sleep,
        limiter=limiter,
    ) as c:
        yield c


# -- list_orders ---------------------------------------------------------------------


async def test_list_orders_sends_verified_query_forms(
    fake: FakeShopmonkey, client: ShopmonkeyClient
) -> None:
    """lowercase `orderby`, operators without `$`, limit <= 100, `skip` paging, Bearer."""
    fake.add_order(_order(1, SINCE - timedelta(days=1)))
    fake.add_order(_order(2, SINCE))
    fake.add_order(_order(3, SINCE + timedelta(hours=1)))

    orders = await client.list_orders(field="createdDate", since=SINCE, page_size=500)

    assert [o["id"] for o in orders] == ["order-0002", "order-0003"]
    [req] = fake.requests
    assert req.method == "GET"
    assert req.path == "/v3/order"
    assert req.authorization == "Bearer k"
    assert json.loads(req.query["where"]) == {"createdDate": {"gte": "2025-11-25T14:00:00.000Z"}}
    assert json.loads(req.query["orderby"]) == {"createdDate": "asc"}
    assert req.query["limit"] == "100"
    assert req.query["skip"] == "0"
    raw = parse_qs(req.query_string)
    # rows embed their customer and vehicle: a polled lead needs no customer call
    assert set(raw) == {
        "where",
        "orderby",
        "limit",
        "skip",
        "include[customer]",
        "include[vehicle]",
    }
    assert req.query["include[customer]"] == req.query["include[vehicle]"] == "true"
    assert "$" not in req.query["where"]
    assert "orderBy" not in req.query_string


async def test_listed_orders_embed_their_customer_and_vehicle(
    fake: FakeShopmonkey, client: ShopmonkeyClient
) -> None:
    """include[customer]/include[vehicle] (the fake honours them as the live API does): each
    row carries the objects GET /customer/:id and /vehicle/:id answer, null when Shopmonkey
    does not know them; nothing else is fetched."""
    person = fake.add_customer({"id": "cust-1", "firstName": "Pat", "phoneNumbers": []})
    car = fake.add_vehicle({"id": "veh-1", "year": 2016, "make": "Honda", "model": "Civic"})
    fake.add_order(_order(1, SINCE))
    fake.add_order(_order(2, SINCE + timedelta(minutes=1)))  # cust-2, veh-2: unknown

    known, unknown = await client.list_orders(field="createdDate", since=SINCE)

    assert (known["customer"], known["vehicle"]) == (person, car)
    assert (unknown["customer"], unknown["vehicle"]) == (None, None)
    assert [r.path for r in fake.requests] == ["/v3/order"]


async def test_the_fake_embeds_nothing_unless_asked(fake: FakeShopmonkey) -> None:
    """Without include[...]=true (or with the forms that do not work live) rows carry ids only."""
    fake.add_customer({"id": "cust-1", "firstName": "Pat"})
    fake.add_order(_order(1, SINCE))
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer k"}) as http:
        for query in ("", "?include=customer", "?expand=customer", "?include[customer]=1"):
            async with http.get(fake.url + "/order" + query) as r:
                [row] = (await r.json())["data"]
            assert "customer" not in row, query


async def test_list_orders_since_is_sent_in_utc_with_milliseconds(
    fake: FakeShopmonkey, client: ShopmonkeyClient
) -> None:
    """A non-UTC, sub-millisecond `since` is sent as UTC truncated to milliseconds, and a
    row in the truncated gap is not mistaken for a dropped filter."""
    fake.add_order(_order(1, SINCE))  # 14:00:00.000Z exactly
    since = datetime(2025, 11, 25, 9, 0, 0, 400, tzinfo=timezone(timedelta(hours=-5)))
    orders = await client.list_orders(field="updatedDate", since=since)
    assert [o["id"] for o in orders] == ["order-0001"]
    where = json.loads(fake.requests[0].query["where"])
    assert where == {"updatedDate": {"gte": "2025-11-25T14:00:00.000Z"}}


async def test_list_orders_rejects_naive_since(client: ShopmonkeyClient) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await client.list_orders(field="createdDate", since=datetime(2025, 11, 25))


async def test_list_orders_pages_with_skip_across_more_than_100(
    fake: FakeShopmonkey, client: ShopmonkeyClient
) -> None:
    """230 orders inserted newest-first come back oldest-first in pages of 100, so the
    `orderby` was honoured and `skip` advanced by the rows received."""
    for n in reversed(range(230)):
        fake.add_order(_order(n, SINCE + timedelta(minutes=n)))

    orders = await client.list_orders(field="createdDate", since=SINCE)

    assert [o["id"] for o in orders] == [f"order-{n:04d}" for n in range(230)]
    list_requests = fake.requests_to("/order")
    assert [r.query["skip"] for r in list_requests] == ["0", "100", "200"]
    assert {r.query["limit"] for r in list_requests} == {"100"}


async def test_list_orders_stops_on_has_more_false_with_full_page(
    fake: FakeShopmonkey, client: ShopmonkeyClient
) -> None:
    """Exactly one full page with hasMore=false needs no second request."""
    for n in range(5):
        fake.add_order(_order(n, SINCE + timedelta(minutes=n)))
    orders = await client.list_orders(field="createdDate", since=SINCE, page_size=5)
    assert len(orders) == 5
    assert len(fake.requests) == 1


async def test_list_orders_deduplicates_rows_shifted_between_pages(
    fake: FakeShopmonkey, client: ShopmonkeyClient
) -> None:
    """An order updated while we page shifts rows, so one shows up on two pages; it is
    returned once."""
    for n in range(4):
        fake.add_order(_order(n, SINCE + timedelta(minutes=10 + n)))

    def insert_early_order(req: RecordedRequest) -> None:
        if req.query.get("skip") == "2":
            fake.add_order(_order(99, SINCE + timedelta(minutes=1)))

    fake.on_request = insert_early_order
    orders = await client.list_orders(field="createdDate", since=SINCE, page_size=2)

    ids = [o["id"] for o in orders]
    assert len(ids) == len(set(ids))
    # Page 2 (skip=2) saw order-0001 again after order-0099 was inserted ahead of it.
    assert ids == ["order-0000", "order-0001", "order-0002", "order-0003"]
    assert [r.query["skip"] for r in fake.requests] == ["0", "2", "4"]


async def test_list_orders_raises_when_filter_is_ignored(
    fake: FakeShopmonkey, client: ShopmonkeyClient, caplog: pytest.LogCaptureFixture
) -> None:
    """When the API drops the `where` and returns the whole table, nothing is returned."""
    fake.add_order(_order(1, SINCE - timedelta(days=30)))
    fake.add_order(_order(2, SINCE + timedelta(minutes=1)))
    fake.ignore_filters = True

    with (
        caplog.at_level(logging.ERROR, logger="leadd.providers.shopmonkey"),
        pytest.raises(ShopmonkeyFilterIgnored, match="order-0001"),
    ):
        await client.list_orders(field="createdDate", since=SINCE)
    assert any(r.getMessage() == "shopmonkey.filter_ignored" for r in caplog.records)


async def test_list_orders_raises_when_field_missing_from_rows(
    fake: FakeShopmonkey, client: ShopmonkeyClient
) -> None:
    """A row that cannot be checked against the filter is treated as unfiltered."""
    order = _order(1, SINCE + timedelta(minutes=1))
    fake.add_order(order)
    fake.ignore_filters = True
    del order["updatedDate"]
    with pytest.raises(ShopmonkeyFilterIgnored):
        await client.list_orders(field="updatedDate", since=SINCE)


async def test_list_orders_guards_against_runaway_paging(
    fake: FakeShopmonkey, client: ShopmonkeyClient
) -> None:
    """After 100 pages that all claim hasMore, the client stops with an error."""
    for n in range(101):
        fake.add_order(_order(n, SINCE + timedelta(seconds=n)))
    with pytest.raises(ShopmonkeyError, match="100 pages") as info:
        await client.list_orders(field="createdDate", since=SINCE, page_size=1)
    assert not isinstance(info.value, ShopmonkeyFilterIgnored)
    assert len(fake.requests) == 100


# -- throttling and retries ------------------------------------------------------------


async def test_429_without_retry_after_backs_off_then_succeeds(
    fake: FakeShopmonkey, client: ShopmonkeyClient, clock: FakeTime, limiter: SpyLimiter
) -> None:
    """Cloudflare's 1015 has no Retry-After: exponential backoff, and every caller paused."""
    fake.add_order(_order(1, SINCE))
    fake.fail_next(2, kind="429")

    orders = await client.list_orders(field="createdDate", since=SINCE)

    assert [o["id"] for o in orders] == ["order-0001"]
    assert clock.sleeps == [0.5, 1.0]
    assert limiter.pauses == [0.5, 1.0]
    assert len(fake.requests) == 3


async def test_429_retry_after_is_honoured(
    fake: FakeShopmonkey, client: ShopmonkeyClient, clock: FakeTime, limiter: SpyLimiter
) -> None:
    fake.add_order(_order(1, SINCE))
    fake.fail_next(1, kind="429-retry-after")
    assert await client.get_order("order-0001") == fake.orders["order-0001"]
    assert clock.sleeps == [1.0]
    assert limiter.pauses == [1.0]


async def test_html_403_is_edge_throttling_not_auth(
    fake: FakeShopmonkey, client: ShopmonkeyClient, clock: FakeTime, limiter: SpyLimiter
) -> None:
    """A Cloudflare HTML 403 is retried like a 429; the key is not blamed."""
    fake.add_order(_order(1, SINCE))
    fake.fail_next(1, kind="html403")
    assert await client.get_order("order-0001") == fake.orders["order-0001"]
    assert clock.sleeps == [0.5]
    assert limiter.pauses == [0.5]
    assert client.last_auth_error is None


async def test_5xx_is_retried_without_pausing_other_callers(
    fake: FakeShopmonkey, client: ShopmonkeyClient, clock: FakeTime, limiter: SpyLimiter
) -> None:
    fake.add_customer({"id": "c1", "firstName": "Jamie"})
    fake.fail_next(1, kind="500")
    assert await client.get_customer("c1") == {"id": "c1", "firstName": "Jamie"}
    assert clock.sleeps == [0.5]
    assert limiter.pauses == []


async def test_down_exhausts_retries_and_raises_unavailable(
    fake: FakeShopmonkey, client: ShopmonkeyClient, clock: FakeTime
) -> None:
    fake.down = True
    with pytest.raises(ShopmonkeyUnavailable, match="4 attempts.*HTTP 503"):
        await client.get_order("order-0001")
    assert len(fake.requests) == 4  # max_attempts
    assert clock.sleeps == [0.5, 1.0, 2.0]  # no wait after the last attempt


async def test_backoff_is_capped(fake: FakeShopmonkey, clock: FakeTime) -> None:
    fake.down = True
    async with ShopmonkeyClient(
        None,
        base_url=fake.url,
        api_key="k",
        requests_per_second=1000,
        max_attempts=6,
        backoff=Backoff(base=1, cap=3, jitter=0.0),
        sleep=clock.sleep,
    ) as c:
        with pytest.raises(ShopmonkeyUnavailable):
            await c.list_orders(field="updatedDate", since=SINCE)
    assert clock.sleeps == [1, 2, 3, 3, 3]


async def test_timeout_is_retried(fake: FakeShopmonkey, clock: FakeTime) -> None:
    """A hanging request is cut at the client timeout and retried."""
    fake.add_vehicle({"id": "v1", "year": 2016, "make": "Honda", "model": "Civic"})
    fake.fail_next(1, kind="timeout")
    async with ShopmonkeyClient(
        None,
        base_url=fake.url,
        api_key="k",
        requests_per_second=1000,
        timeout=0.2,
        backoff=NO_JITTER,
        sleep=clock.sleep,
    ) as c:
        vehicle = await c.get_vehicle("v1")
    assert vehicle is not None and vehicle["make"] == "Honda"
    assert clock.sleeps == [0.5]
    assert len(fake.requests) == 2


async def test_connection_refused_raises_unavailable(clock: FakeTime) -> None:
    fake = FakeShopmonkey()
    await fake.start()
    url = fake.url
    await fake.stop()  # nothing listens on that port any more
    async with ShopmonkeyClient(
        None,
        base_url=url,
        api_key="k",
        requests_per_second=1000,
        max_attempts=2,
        backoff=NO_JITTER,
        sleep=clock.sleep,
    ) as c:
        with pytest.raises(ShopmonkeyUnavailable, match="2 attempts"):
            await c.get_order("x")
    assert clock.sleeps == [0.5]


# -- auth ------------------------------------------------------------------------------


async def test_401_raises_auth_error_without_retry(
    fake: FakeShopmonkey, clock: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    async with ShopmonkeyClient(
        None, base_url=fake.url, api_key="wrong", requests_per_second=1000, sleep=clock.sleep
    ) as c:
        with (
            caplog.at_level(logging.ERROR, logger="leadd.providers.shopmonkey"),
            pytest.raises(ShopmonkeyAuthError, match="Unauthorized") as info,
        ):
            await c.list_orders(field="createdDate", since=SINCE)
        assert info.value.status == 401
        assert c.last_auth_error is not None and "invalid" in c.last_auth_error
    assert len(fake.requests) == 1
    assert clock.sleeps == []
    [record] = [r for r in caplog.records if r.getMessage() == "shopmonkey.auth_failed"]
    assert record.levelno == logging.ERROR
    assert record.fields["api_message"] == "Unauthorized"  # type: ignore[attr-defined]
    assert "wrong" not in repr(record.fields)  # type: ignore[attr-defined]


async def test_json_403_is_auth_error_and_clears_on_next_success(
    fake: FakeShopmonkey, client: ShopmonkeyClient, clock: FakeTime
) -> None:
    """An under-scoped key (JSON 403) is reported for /readyz until a call succeeds."""
    fake.add_order(_order(1, SINCE))
    fake.fail_next(1, kind="403")
    with pytest.raises(ShopmonkeyAuthError, match="permission") as info:
        await client.get_order("order-0001")
    assert info.value.status == 403
    assert client.last_auth_error is not None and "403" in client.last_auth_error
    assert clock.sleeps == []

    assert await client.get_order("order-0001") is not None
    assert client.last_auth_error is None


# -- single-object reads ------------------------------------------------------------------


async def test_reads_unwrap_envelope(fake: FakeShopmonkey, client: ShopmonkeyClient) -> None:
    order = fake.add_order(_order(1, SINCE))
    customer = fake.add_customer({"id": "cust-1", "firstName": "Jamie", "lastName": "Rivera"})
    vehicle = fake.add_vehicle({"id": "veh-1", "year": 2016, "make": "Honda", "model": "Civic"})
    service = fake.add_service(order["id"], {"id": "s1", "name": "Brake inspection"})

    assert await client.get_order(order["id"]) == order
    assert await client.get_customer("cust-1") == customer
    assert await client.get_vehicle("veh-1") == vehicle
    assert await client.get_order_services(order["id"]) == [service]
    assert [r.path for r in fake.requests] == [
        "/v3/order/order-0001",
        "/v3/customer/cust-1",
        "/v3/vehicle/veh-1",
        "/v3/order/order-0001/service",
    ]


async def test_404_returns_none_or_empty(fake: FakeShopmonkey, client: ShopmonkeyClient) -> None:
    assert await client.get_order("missing") is None
    assert await client.get_customer("missing") is None
    assert await client.get_vehicle("missing") is None
    assert await client.get_order_services("missing") == []
    assert len(fake.requests) == 4  # 404 is an answer, not retried


async def test_ids_are_quoted_into_one_path_segment(
    fake: FakeShopmonkey, client: ShopmonkeyClient
) -> None:
    """An id from a webhook cannot steer the request to another endpoint."""
    fake.add_order(_order(1, SINCE))
    fake.add_service("order-0001", {"id": "s1"})
    assert await client.get_order("order-0001/service") is None
    assert fake.requests[-1].path == "/v3/order/order-0001/service"  # decoded by the server
    assert len(fake.requests_to("/order/order-0001/service")) == 1


async def test_shared_session_is_not_closed(fake: FakeShopmonkey, clock: FakeTime) -> None:
    fake.add_order(_order(1, SINCE))
    async with aiohttp.ClientSession() as session:
        async with ShopmonkeyClient(
            session, base_url=fake.url, api_key="k", requests_per_second=1000, sleep=clock.sleep
        ) as c:
            assert await c.get_order("order-0001") is not None
        assert not session.closed


def test_enabled_reflects_api_key() -> None:
    assert ShopmonkeyClient(None, base_url="http://x/v3", api_key="k").enabled is True
    assert ShopmonkeyClient(None, base_url="http://x/v3", api_key="").enabled is False
