"""Case 5: property-based fuzzing (hypothesis) of every HTTP endpoint of one real `leadd run`
process, and of the Shopmonkey payloads that reach enrichment (embedded in signed orders, or
served by the fake API) and the poller (served by the fake's order list).

Promises: zero 5xx; zero writes for a bad signature; zero crashed tasks
(`leadd_task_restarts_total` stays 0); and after all of it a good lead is still answered.

One daemon (and one database) serves the whole module so hundreds of examples stay fast. The
tests are synchronous (hypothesis drives them); the fake providers and the HTTP client live on
an event loop in a background thread. The tests that check "zero writes" come first in the
file, before anything creates data in the background.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from leadd import phones as phonemod
from tests.chaos.harness import (
    Daemon,
    Http,
    Reply,
    SendGridSigner,
    daemon_config,
    iso,
    metric,
    order,
    people,
    signed_headers,
    sql,
    webhook,
)
from tests.chaos.pii import PiiScanner
from tests.conftest import _sql, _with_db
from tests.fakes.shopmonkey import FakeShopmonkey
from tests.fakes.twilio import FakeTwilio

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


# LEADD_FUZZ_SCALE=10 runs ten times the examples (a deeper local run).
SCALE = float(os.environ.get("LEADD_FUZZ_SCALE", "1"))


def fuzz(max_examples: int, *, shrink: bool = True) -> Any:
    """Settings for one fuzz test. CI runs a fixed set of examples (derandomized), so a red
    build is reproducible; elsewhere each run explores new ones."""
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])
    if os.environ.get("LEADD_FUZZ_GENERATED_ONLY"):  # explore past a known failing example
        phases.remove(Phase.explicit)
    return settings(
        max_examples=max(1, int(max_examples * SCALE)),
        deadline=None,
        database=None,
        derandomize=bool(os.environ.get("CI")),
        phases=phases,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


# --------------------------------------------------------------------------- strategies

TEXT = st.text(st.characters(codec="utf-8"), max_size=30)
NASTY = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",  # a lone surrogate: json.dumps escapes it, the daemon decodes it back
        "²",
        "١٢٣",
        "'; DROP TABLE leads; --",
        "{{ tenant.name }}",
        "\u202e\u0000",
        "𝕏" * 40,
        "x" * 5000,
        "%00",
        "../../etc/passwd",
    ]
)
STRINGS = st.one_of(TEXT, NASTY)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),
    STRINGS,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=10,
)
PHONES = st.one_of(
    st.sampled_from(
        [
            "+13125550100",
            "(312) 555-0101",
            "+16055550100",
            "+12085550100",
            "+442071838750",
            "0",
            "+",
            "+1" + "9" * 30,
        ]
    ),
    st.from_regex(r"\+?[0-9 ()\-]{0,20}", fullmatch=True),
)
EMAILS = st.one_of(
    st.emails(),
    st.sampled_from(["josé@example.com", "o'brien@example.com", "a@b", "@", "x" * 300 + "@e.com"]),
)
CUSTOMER = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.uuids().map(str), JSON),
        "firstName": st.one_of(STRINGS, JSON),
        "lastName": st.one_of(STRINGS, JSON),
        "phone": st.one_of(PHONES, JSON),
        "email": st.one_of(EMAILS, JSON),
        "phoneNumbers": st.one_of(
            JSON,
            st.lists(
                st.fixed_dictionaries(
                    {}, optional={"number": st.one_of(PHONES, JSON), "primary": JSON}
                ),
                max_size=3,
            ),
        ),
        "emails": st.one_of(
            JSON,
            st.lists(
                st.fixed_dictionaries(
                    {}, optional={"email": st.one_of(EMAILS, JSON), "primary": JSON}
                ),
                max_size=3,
            ),
        ),
    },
)
SERVICES = st.one_of(
    JSON,
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "name": st.one_of(STRINGS, JSON),
                "totalCents": st.one_of(st.integers(), st.just(10**400), JSON),
            },
        ),
        max_size=3,
    ),
)
DATES = st.one_of(
    st.datetimes(
        min_value=dt.datetime(1970, 1, 2),
        max_value=dt.datetime(2100, 1, 1),
        timezones=st.just(dt.UTC),
    ).map(iso),
    JSON,
)
ORDER_FIELDS = {
    "customer": st.one_of(CUSTOMER, JSON),
    "customerId": st.one_of(st.uuids().map(str), JSON),
    "vehicleId": st.one_of(st.uuids().map(str), JSON),
    "vehicle": st.one_of(
        st.fixed_dictionaries({}, optional={"year": JSON, "make": JSON, "model": JSON}), JSON
    ),
    "services": SERVICES,
    "locationId": st.one_of(st.just("loc-sm-1"), JSON),
    "number": JSON,
    "meta": st.one_of(st.fixed_dictionaries({"version": JSON}), JSON),
    "updatedDate": DATES,
    "createdDate": DATES,
    "authorized": JSON,
    "invoiced": JSON,
    "deleted": JSON,
    "appointmentDates": JSON,
    "generatedVehicleName": st.one_of(STRINGS, JSON),
    "complaint": STRINGS,
}
ORDER = st.fixed_dictionaries(
    {"id": st.one_of(st.uuids().map(str), STRINGS, JSON)}, optional=ORDER_FIELDS
)
PAYLOAD = st.one_of(
    st.fixed_dictionaries(
        {
            "table": st.one_of(st.just("order"), JSON),
            "operation": st.one_of(st.sampled_from(["INSERT", "UPDATE", "DELETE"]), JSON),
            "data": st.one_of(ORDER, JSON),
        },
        optional={"apiVersion": JSON},
    ),
    JSON,
)
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
FORMS = st.dictionaries(TEXT, TEXT, max_size=8)
CONTENT_TYPES = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=bogus",
        "application/x-www-form-urlencoded; charset=utf-16",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "application/json",
        "text/plain; charset=latin-1",
        "",
    ]
)


# --------------------------------------------------------------------------- the world


class World:
    """The module's daemon, its fakes on a background event loop, and sync helpers."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.scanner = PiiScanner()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.twilio = FakeTwilio()
        self.shop = FakeShopmonkey(api_key="sm-fuzz-key-0c1d2e")
        self.call(self.twilio.start())
        self.call(self.shop.start())
        self.session = self.call(self._session())
        self.http = Http(self.scanner, self.session)
        self.signer = SendGridSigner()
        config = daemon_config(
            database_url,
            twilio=self.twilio,
            shopmonkey=self.shop,
            poll_interval="1s",
            sendgrid=None,
        )
        config["sendgrid"] = {"event_webhook_public_key": self.signer.public_key}
        self.daemon = Daemon(config, self.scanner, "fuzz")
        self.daemon.start()
        self.call(self.daemon.wait_ready())
        self.scanner.add_secret(self.twilio.auth_token)
        self.scanner.add_secret(self.shop.api_key)

    @staticmethod
    async def _session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8))

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.daemon.stop()
        # Fuzzed names are random words (not people); fuzzed numbers and addresses that are
        # real ones must still never appear whole.
        self.scanner.add_served(twilio=self.twilio)
        for customer in self.shop.served_customers():
            for value in _strings_in(customer):
                if "@" in value:
                    self.scanner.add_email(value)
                elif phonemod.normalize(value):
                    self.scanner.add_phone(value)
        self.call(self.session.close())
        self.call(self.twilio.stop())
        self.call(self.shop.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    # -- requests -----------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> Reply:
        return self.call(self.http.request(method, self.daemon.url + path, **kwargs))

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        return self.request("POST", path, data=body, headers=headers)

    def twilio_signed(self, path: str, form: dict[str, str]) -> Reply:
        token = self.twilio.auth_token
        return self.call(self.http.post_twilio(self.daemon.url, path, form, token))

    def sendgrid_signed(self, body: bytes) -> Reply:
        return self.post("/webhooks/sendgrid/events", body, self.signer.headers(body))

    # -- observations -------------------------------------------------------------------

    def sql(self, query: str, *args: Any) -> list[Any]:
        return self.call(sql(self.database_url, query, *args))

    def fingerprint(self) -> tuple[Any, ...]:
        """Everything a webhook may write, reduced to counts and checksums. Background work
        (enrichment, sends) does not change it; a forged request that got through would."""
        row = self.sql(
            """SELECT
                (SELECT count(*) FROM leads),
                (SELECT md5(coalesce(string_agg(id::text || order_data::text, ',' ORDER BY id), ''))
                   FROM leads),
                (SELECT count(*) FROM lead_events WHERE cause LIKE 'order.%' OR cause LIKE 'sms.reply%'),
                (SELECT count(*) FROM contact_optouts),
                (SELECT count(*) FROM chat_messages WHERE direction = 'inbound'),
                (SELECT md5(coalesce(string_agg(provider_id || status, ',' ORDER BY provider_id), ''))
                   FROM message_status),
                (SELECT count(*) FROM email_events),
                (SELECT count(*) FROM touch_points WHERE state = 'cancelled')"""
        )[0]
        return tuple(row)

    def restarts(self) -> float:
        return float(self.call(self.daemon.task_restarts(self.http)))

    def metrics(self) -> Any:
        return self.call(self.daemon.metrics(self.http))


@pytest.fixture(scope="module")
def world(pg_server: str, template_db: str) -> Iterator[World]:
    name = f"fuzz_{uuid.uuid4().hex[:12]}"
    _sql(pg_server, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    w = World(_with_db(pg_server, name))
    try:
        yield w
    finally:
        w.close()
        _sql(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    w.scanner.assert_clean()


def _strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings_in(v)]
    return []


def no_5xx(reply: Reply, what: str) -> None:
    assert reply.status != 0, f"{what}: no answer ({reply.text})"
    assert reply.status < 500, f"{what}: {reply.status} {reply.text[:300]}"


# --------------------------------------------------------------------------- bad signatures


@fuzz(80)
@given(
    body=st.one_of(PAYLOAD.map(lambda p: json.dumps(p).encode()), st.binary(max_size=300)),
    headers=st.dictionaries(
        st.sampled_from(
            ["webhook-id", "webhook-timestamp", "webhook-signature", "X-Shopmonkey-Signature"]
        ),
        st.one_of(HEADER_TEXT, st.just(str(int(time.time()))), st.just("9" * 5000)),
    ),
)
@example(
    body=b"{}",
    headers={"webhook-id": "m", "webhook-timestamp": "9" * 5000, "webhook-signature": "v1,x"},
)
@example(
    body=b"{}", headers={"webhook-id": "m", "webhook-timestamp": "²", "webhook-signature": "v1,x"}
)
@example(body=b"{}", headers={"X-Shopmonkey-Signature": "zz"})
def test_forged_shopmonkey_webhooks_are_refused_and_write_nothing(
    world: World, body: bytes, headers: dict[str, str]
) -> None:
    before = world.fingerprint()
    reply = world.post(
        "/webhooks/shopmonkey/order", body, {**headers, "Content-Type": "application/json"}
    )
    no_5xx(reply, "forged shopmonkey webhook")
    assert 400 <= reply.status < 500, reply  # refused with a reason (401, 400, 413, 415...)
    assert world.fingerprint() == before


@fuzz(80)
@given(
    path=st.sampled_from(["/webhooks/twilio/sms", "/webhooks/twilio/status"]),
    form=FORMS,
    content_type=CONTENT_TYPES,
    signature=st.one_of(st.none(), HEADER_TEXT),
    raw=st.one_of(st.none(), st.binary(max_size=200)),
)
@example(
    path="/webhooks/twilio/sms",
    form={"Body": "STOP", "From": "+13125550100"},
    content_type="application/x-www-form-urlencoded; charset=bogus",
    signature="x",
    raw=None,
)
@example(
    path="/webhooks/twilio/sms",
    form={},
    content_type="multipart/form-data",
    signature="x",
    raw=b"--x",
)
def test_forged_twilio_callbacks_are_refused_and_write_nothing(
    world: World,
    path: str,
    form: dict[str, str],
    content_type: str,
    signature: str | None,
    raw: bytes | None,
) -> None:
    before = world.fingerprint()
    headers = {"X-Twilio-Signature": signature} if signature is not None else {}
    if content_type:
        headers["Content-Type"] = content_type
    body = (
        raw
        if raw is not None
        else "&".join(f"{quote(k)}={quote(v)}" for k, v in form.items()).encode()
    )
    reply = world.post(path, body, headers)
    no_5xx(reply, f"forged {path}")
    assert 400 <= reply.status < 500, reply  # refused with a reason (403, 400, 413, 415...)
    assert world.fingerprint() == before


@fuzz(60)
@given(
    body=st.one_of(
        st.lists(st.dictionaries(TEXT, JSON, max_size=5), max_size=3).map(
            lambda e: json.dumps(e).encode()
        ),
        st.binary(max_size=200),
    ),
    timestamp=st.one_of(
        HEADER_TEXT, st.just(str(int(time.time()))), st.just("²"), st.just("9" * 5000)
    ),
    signature=st.one_of(
        HEADER_TEXT, st.binary(min_size=8, max_size=72).map(lambda b: base64.b64encode(b).decode())
    ),
)
@example(body=b"[]", timestamp="²", signature="eA==")
def test_forged_sendgrid_events_are_refused_and_write_nothing(
    world: World, body: bytes, timestamp: str, signature: str
) -> None:
    before = world.fingerprint()
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": signature,
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }
    reply = world.post("/webhooks/sendgrid/events", body, headers)
    no_5xx(reply, "forged sendgrid events")
    assert 400 <= reply.status < 500, reply  # refused with a reason (403, 400, 413, 415...)
    assert world.fingerprint() == before


# --------------------------------------------------------------------------- signed garbage


ACCEPTED: list[str] = []  # lead ids created by signed fuzzed orders (checked after enrichment)


@fuzz(150)
@given(
    payload=st.one_of(
        PAYLOAD.map(lambda p: json.dumps(p).encode()),
        st.fixed_dictionaries({"data": ORDER})
        .map(lambda p: {"table": "order", "operation": "INSERT", **p})
        .map(lambda p: json.dumps(p).encode()),
        st.binary(max_size=300),
    )
)
@example(payload=json.dumps(webhook(order(None, customer={"firstName": 42}))).encode())
@example(payload=json.dumps(webhook(order(None, customer={"firstName": ["x"]}))).encode())
@example(
    payload=json.dumps(
        webhook(order(None, services=[{"name": "Oil", "totalCents": 10**400}]))
    ).encode()
)
def test_signed_garbage_orders_are_answered_without_5xx(world: World, payload: bytes) -> None:
    reply = world.post("/webhooks/shopmonkey/order", payload, signed_headers(payload))
    no_5xx(reply, "signed order")
    answer = reply.json()
    if reply.status == 200 and isinstance(answer, dict) and "leadId" in answer:
        ACCEPTED.append(answer["leadId"])
    elif reply.status >= 400:
        assert isinstance(answer, dict) and answer.get("error"), reply


PHONE_POOL = ["+13125550170", "+13125550171", "+17735550172"]


@fuzz(100)
@given(
    path=st.sampled_from(["/webhooks/twilio/sms", "/webhooks/twilio/status"]),
    form=st.fixed_dictionaries(
        {},
        optional={
            "From": st.one_of(st.sampled_from(PHONE_POOL), TEXT),
            "To": st.one_of(st.sampled_from(PHONE_POOL), TEXT),
            "Body": st.one_of(
                st.sampled_from(
                    ["STOP", " stop ", "START", "HELP", "yes", "UNSUBSCRIBE", "stop\x00"]
                ),
                TEXT,
            ),
            "MessageSid": st.one_of(st.just("SM" + "a" * 32), TEXT),
            "SmsSid": TEXT,
            "MessageStatus": st.one_of(
                st.sampled_from(["delivered", "failed", "undelivered", "sent"]), TEXT
            ),
            "ErrorCode": st.one_of(st.sampled_from(["21610", "30003", "²"]), TEXT),
            "NumMedia": TEXT,
        },
    ).flatmap(lambda f: st.dictionaries(TEXT, TEXT, max_size=3).map(lambda extra: {**extra, **f})),
)
@example(
    path="/webhooks/twilio/sms",
    form={"From": PHONE_POOL[0], "Body": "stop\x00", "MessageSid": "SM" + "b" * 32},
)
@example(
    path="/webhooks/twilio/status",
    form={"MessageSid": "SM" + "c" * 32, "MessageStatus": "failed", "ErrorCode": "²"},
)
def test_signed_twilio_callbacks_are_answered_without_5xx(
    world: World, path: str, form: dict[str, str]
) -> None:
    no_5xx(world.twilio_signed(path, form), f"signed {path} {form}")


@fuzz(80)
@given(
    events=st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {
                    "sg_event_id": st.one_of(st.uuids().map(str), STRINGS, JSON),
                    "event": st.one_of(
                        st.sampled_from(
                            ["delivered", "bounce", "spamreport", "unsubscribe", "open"]
                        ),
                        STRINGS,
                        JSON,
                    ),
                },
                optional={
                    "email": st.one_of(EMAILS, JSON),
                    "lead_id": st.one_of(st.uuids().map(str), JSON),
                    "touch_point_id": st.one_of(st.sampled_from(["1", "²", "9" * 40]), JSON),
                    "sg_message_id": st.one_of(STRINGS, JSON),
                    "timestamp": JSON,
                },
            ),
            JSON,
        ),
        max_size=5,
    )
)
@example(events=[{"sg_event_id": "e1", "event": "delivered", "touch_point_id": "²"}])
@example(events=[{"sg_event_id": "e\x00", "event": "open"}])
def test_signed_sendgrid_batches_are_answered_without_5xx(world: World, events: list[Any]) -> None:
    no_5xx(world.sendgrid_signed(json.dumps(events).encode()), f"signed sendgrid {events!r:.200}")


@fuzz(80)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    path=st.one_of(
        st.sampled_from(["/healthz", "/readyz", "/metrics", "/unsubscribe/"]),
        st.lists(TEXT, max_size=4).map(
            lambda parts: "/" + "/".join(quote(p, safe="") for p in parts)
        ),
        TEXT.map(lambda t: "/unsubscribe/" + quote(t, safe="")),
        st.just("/unsubscribe/%00"),
    ),
    query=st.dictionaries(HEADER_TEXT, HEADER_TEXT, max_size=3),
    body=st.binary(max_size=100),
)
@example(method="POST", path="/unsubscribe/%00", query={}, body=b"")
@example(method="GET", path="/unsubscribe/%00", query={}, body=b"")
def test_every_route_and_method_is_answered_without_5xx(
    world: World, method: str, path: str, query: dict[str, str], body: bytes
) -> None:
    reply = world.request(method, path, params=query, data=body)
    no_5xx(reply, f"{method} {path}")


# --------------------------------------------------------------------------- enrichment, poller


def wait_or_crash(world: World, predicate: Any, timeout: float, task: str | None = None) -> None:
    """Wait for `predicate()`; fail early as soon as a task (or this `task`) has crashed.
    Polls: the daemon is another process and offers no event to wait on."""
    deadline = time.monotonic() + timeout
    labels = {"task": task} if task else {}
    while time.monotonic() < deadline:
        crashed = metric(world.metrics(), "leadd_task_restarts_total", **labels)
        assert crashed == 0, world.request("GET", "/readyz").text
        if predicate():
            return
        time.sleep(0.25)
    readyz = world.request("GET", "/readyz").text
    raise AssertionError(f"not done within {timeout}s; /readyz: {readyz}")


def test_hostile_customers_reach_enrichment_and_crash_nothing(world: World) -> None:
    """The signed orders above carried hostile embedded customers and services; here more
    orders point (customerId) at hostile customers the fake Shopmonkey API serves. Every lead
    is processed by enrichment (done, partial or failed with a reason), no task crashes, and
    a good lead posted after all of it is still acknowledged."""

    @fuzz(40, shrink=False)
    @given(customer=CUSTOMER, services=SERVICES)
    def post_api_customer(customer: dict[str, Any], services: Any) -> None:
        data = order(None, customerId=str(uuid.uuid4()))
        world.shop.add_customer({**customer, "id": data["customerId"]})
        if isinstance(services, list):
            for service in services:
                world.shop.add_service(data["id"], service if isinstance(service, dict) else {})
        body = json.dumps(webhook(data)).encode()
        reply = world.post("/webhooks/shopmonkey/order", body, signed_headers(body))
        no_5xx(reply, "order with an API customer")
        if reply.status == 200 and "leadId" in (reply.json() or {}):
            ACCEPTED.append(reply.json()["leadId"])

    post_api_customer()
    assert ACCEPTED, "no fuzzed order was accepted: the strategies are too hostile"

    def processed() -> bool:
        rows = world.sql(
            "SELECT count(*) FROM leads WHERE id = ANY($1::uuid[])"
            " AND (enrichment_status <> 'pending' OR last_error IS NOT NULL)",
            [uuid.UUID(i) for i in ACCEPTED],
        )
        return bool(rows[0][0] == len(set(ACCEPTED)))

    wait_or_crash(world, processed, timeout=60)
    _a_good_lead_is_still_answered(world)


def _a_good_lead_is_still_answered(world: World) -> None:
    person = people(1, seed=50, offset=40)[0]
    world.scanner.add_customer(person.customer())
    data = order(person)
    body = json.dumps(webhook(data)).encode()
    reply = world.post("/webhooks/shopmonkey/order", body, signed_headers(body))
    assert reply.status == 200, reply
    wait_or_crash(world, lambda: world.twilio.counts_by_recipient()[person.phone] == 1, 30)


def test_hostile_polled_orders_never_stop_the_poller(world: World) -> None:
    """Batches of hostile orders (NUL characters, wrong types, huge numbers, deep nesting,
    ids that are not strings) are listed by the fake Shopmonkey, each batch followed by a
    good order updated later. The poller skips the bad ones, moves its cursor past them and
    stores the good one; no task crashes."""
    sentinels = itertools.count(60)  # a new good customer for every batch

    @fuzz(6, shrink=False)
    @given(batch=st.lists(ORDER, min_size=1, max_size=6))
    @example(batch=[{"id": 123}, {"id": str(uuid.uuid4()), "complaint": "a\x00b"}])
    @example(batch=[{"id": "\ud800"}, {"id": str(uuid.uuid4()), "customer": {"firstName": 7}}])
    def poll_batch(batch: list[dict[str, Any]]) -> None:
        now = dt.datetime.now(dt.UTC)
        for i, bad in enumerate(batch):
            bad = {**bad, "updatedDate": iso(now + dt.timedelta(milliseconds=i))}
            key = bad["id"] if isinstance(bad.get("id"), str) else f"bad-{uuid.uuid4()}"
            world.shop.orders[key] = bad
        person = people(1, seed=51, offset=next(sentinels))[0]
        world.scanner.add_customer(person.customer())
        good = order(person, updatedDate=iso(now + dt.timedelta(seconds=1)))
        world.shop.add_order(good)

        def stored() -> bool:
            return bool(world.sql("SELECT 1 FROM leads WHERE shopmonkey_order_id = $1", good["id"]))

        wait_or_crash(world, stored, timeout=20, task="poll")

    poll_batch()
    assert metric(world.metrics(), "leadd_poll_cycles_total", status="ok") > 0


def test_after_all_of_it_no_task_has_crashed_and_the_daemon_is_ready(world: World) -> None:
    reply = world.request("GET", "/readyz")
    assert world.restarts() == 0 and reply.status == 200, reply.text
