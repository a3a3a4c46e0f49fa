"""Order events as pure functions (leadd.intake.events): what an order says, ordering,
validation, decoding; with the lifecycle's transitions, the demo filter and the transient
database errors they are used with."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from leadd import lifecycle
from leadd.intake import demo, events
from leadd.store.errors import is_transient

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def insert_payload() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (FIXTURES / "shopmonkey-webhook-order-insert.json").read_text()
    )
    return data


def with_data(**changes: Any) -> dict[str, Any]:
    payload = insert_payload()
    payload["data"].update(changes)
    return payload


# --------------------------------------------------------------------------- can_transition


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("new", "qualified"),
        ("new", "appointment_set"),
        ("qualified", "appointment_set"),
        ("appointment_set", "completed"),
        ("contacted", "lost"),
        ("appointment_set", "lost"),
    ],
)
def test_forward_transitions_are_allowed(current: str, target: str) -> None:
    assert lifecycle.can_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("appointment_set", "qualified"),  # backwards
        ("qualified", "new"),
        ("qualified", "qualified"),  # not a change
        ("completed", "lost"),  # out of a terminal state
        ("lost", "completed"),
        ("lost", "new"),
    ],
)
def test_backward_repeat_and_terminal_transitions_are_refused(current: str, target: str) -> None:
    assert not lifecycle.can_transition(current, target)


# --------------------------------------------------------------------------- order_target_state


@pytest.mark.parametrize(
    ("changes", "operation", "expected"),
    [
        ({}, "INSERT", None),
        ({"authorized": True}, "UPDATE", "qualified"),
        ({"appointmentDates": ["2026-12-01T15:00:00.000Z"]}, "UPDATE", "appointment_set"),
        (
            {"authorized": True, "appointmentDates": ["2026-12-01T15:00:00.000Z"]},
            "UPDATE",
            "appointment_set",
        ),
        ({"invoiced": True, "authorized": True}, "UPDATE", "completed"),
        ({"paid": True}, "UPDATE", "completed"),
        ({"deleted": True, "paid": True}, "UPDATE", "lost"),
        ({}, "DELETE", "lost"),
    ],
)
def test_order_target_state_takes_the_strongest_signal(
    changes: dict[str, Any], operation: str, expected: str | None
) -> None:
    order = {**insert_payload()["data"], **changes}
    assert events.order_target_state(order, operation) == expected


# --------------------------------------------------------------------------- is_newer

T0 = dt.datetime(2026, 11, 25, 14, 0, tzinfo=dt.UTC)


def test_is_newer_prefers_meta_version_over_updated_date() -> None:
    order = {"meta": {"version": 3}, "updatedDate": "2020-01-01T00:00:00.000Z"}
    assert events.is_newer(order, 2, T0)  # higher version wins although its date is older
    assert not events.is_newer(order, 3, T0)
    assert not events.is_newer(order, 4, None)


def test_is_newer_falls_back_to_updated_date() -> None:
    later = {"updatedDate": "2026-11-25T14:00:01.000Z"}
    same = {"updatedDate": "2026-11-25T14:00:00.000Z"}
    assert events.is_newer(later, None, T0)
    assert not events.is_newer(same, None, T0)
    assert events.is_newer({"meta": {"version": 1}, **later}, None, T0)  # stored has no version


def test_is_newer_without_version_information_is_not_newer() -> None:
    """A body with neither meta.version nor updatedDate (a replay, a truncated row) never
    overwrites what is stored, whatever is stored."""
    assert not events.is_newer({}, None, None)
    assert not events.is_newer({}, 3, T0)
    assert not events.is_newer({"meta": {}, "updatedDate": None}, 3, None)
    assert not events.is_newer({"meta": {"version": None}}, None, T0)


def test_is_newer_with_information_the_stored_order_lacked_is_newer() -> None:
    assert events.is_newer({"meta": {"version": 1}}, None, None)
    assert events.is_newer({"updatedDate": "2026-11-25T14:00:00.000Z"}, None, None)


def test_is_newer_with_nothing_comparable_on_both_sides_is_not_newer() -> None:
    # A version against a stored date only (or the reverse) cannot be ordered: keep what is
    # stored rather than guess.
    assert not events.is_newer({"meta": {"version": 9}}, None, T0)
    assert not events.is_newer({"updatedDate": "2030-01-01T00:00:00.000Z"}, 2, None)


# --------------------------------------------------------------------------- parse_event


def test_parse_event_accepts_the_fixture_order() -> None:
    event = events.parse_event(insert_payload(), "webhook", "msg_1")
    assert isinstance(event, events.OrderEvent)
    assert event.order_id == "2e13e5ed-9dc0-4d7f-8658-c6740e0d2838"
    assert (event.operation, event.source, event.delivery_id) == ("INSERT", "webhook", "msg_1")


def test_other_tables_are_a_reason_not_an_error() -> None:
    payload = {"apiVersion": "3", "operation": "INSERT", "table": "customer", "data": {}}
    reason = events.parse_event(payload, "webhook")
    assert isinstance(reason, str) and "customer" in reason


def test_names_with_quotes_emoji_and_sql_pass_validation_untouched() -> None:
    name = "O'Brien \"Bobby\" 🚗 '); DROP TABLE leads; --"
    event = events.parse_event(with_data(generatedCustomerName=name, name=name), "webhook")
    assert isinstance(event, events.OrderEvent)
    assert event.order["generatedCustomerName"] == name


def _missing_id() -> dict[str, Any]:
    payload = insert_payload()
    del payload["data"]["id"]
    return payload


def _nested(depth: int) -> dict[str, Any]:
    payload = insert_payload()
    inner: Any = "leaf"
    for _ in range(depth):
        inner = {"x": inner}
    payload["data"]["customFields"] = inner
    return payload


BAD_EVENTS: list[tuple[str, Any, str]] = [
    ("not an object", [1, 2], "JSON object"),
    ("no table", {"operation": "INSERT", "data": {}}, "'table'"),
    ("bad operation", {**insert_payload(), "operation": "UPSERT"}, "'operation'"),
    ("data not an object", {**insert_payload(), "data": "x"}, "'data'"),
    ("missing data.id", _missing_id(), "'data.id'"),
    ("empty data.id", with_data(id="  "), "'data.id'"),
    ("numeric data.id", with_data(id=1000), "'data.id'"),
    ("overlong data.id", with_data(id="x" * 200), "'data.id'"),
    ("customerId a number", with_data(customerId=5), "'data.customerId'"),
    ("authorized a string", with_data(authorized="yes"), "'data.authorized'"),
    ("number a float", with_data(number=1.5), "'data.number'"),
    ("number a bool", with_data(number=True), "'data.number'"),
    ("appointmentDates a string", with_data(appointmentDates="soon"), "appointmentDates"),
    ("meta a list", with_data(meta=[1]), "'data.meta'"),
    ("version a string", with_data(meta={"version": "2"}), "version"),
    ("version past bigint", with_data(meta={"version": 2**63}), "version"),
    ("version negative", with_data(meta={"version": -1}), "version"),
    ("updatedDate not a date", with_data(updatedDate="yesterday"), "updatedDate"),
    ("too deep", _nested(40), "nested deeper"),
    ("NUL in a string", with_data(complaint="brakes\x00"), "NUL"),
    ("NUL in a key", with_data(**{"cust\x00om": 1}), "NUL"),
    ("lone surrogate", with_data(complaint="\ud800"), "surrogate"),
    ("infinite number", with_data(totalCostCents=float("inf")), "finite"),
]


@pytest.mark.parametrize(
    ("payload", "reason"), [(p, r) for _, p, r in BAD_EVENTS], ids=[i for i, _, _ in BAD_EVENTS]
)
def test_parse_event_rejects_garbage_with_a_reason(payload: Any, reason: str) -> None:
    with pytest.raises(events.BadEvent, match=reason):
        events.parse_event(copy.deepcopy(payload), "webhook")


def test_nesting_just_under_the_limit_is_accepted() -> None:
    # payload -> data -> customFields -> 28 levels -> leaf: 31 containers deep.
    event = events.parse_event(_nested(28), "webhook")
    assert isinstance(event, events.OrderEvent)


# --------------------------------------------------------------------------- decode_json


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"a": ', "not valid JSON"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": -Infinity}', "Infinity"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
    ],
)
def test_decode_json_rejects_what_postgres_cannot_store(raw: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        events.decode_json(raw)


def test_demo_filter_lets_only_test_contacts_through() -> None:
    def order(phone: str | None, email: str | None) -> dict[str, Any]:
        customer: dict[str, Any] = {"phoneNumbers": [], "emails": []}
        if phone:
            customer["phoneNumbers"].append({"number": phone, "primary": True})
        if email:
            customer["emails"].append({"email": email, "primary": True})
        return {"id": "o", "customer": customer}

    assert demo.filter_reason(order("+15555550123", None)) is None
    assert demo.filter_reason(order(None, "someone+test@example.com")) is None
    assert demo.filter_reason(order("+15125550123", "jamie@example.com")) is not None
    assert demo.filter_reason({"id": "o"}) is None  # decided after enrichment


# --------------------------------------------------------------------------- one validation


@pytest.mark.parametrize(("_name", "payload", "reason"), BAD_EVENTS[4:])
def test_validate_order_is_the_same_check_for_a_polled_order(
    _name: str, payload: Any, reason: str
) -> None:
    """The poller hands `validate_order` a bare order (the webhook's `data`): every order-level
    refusal of the webhook path applies to it too, NUL and surrogates included."""
    with pytest.raises(events.BadEvent, match=reason):
        events.validate_order(copy.deepcopy(payload["data"]))


def test_validate_order_refuses_what_is_not_an_order() -> None:
    for value in (None, [], "order", 42):
        with pytest.raises(events.BadEvent, match="object"):
            events.validate_order(value)


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+23:59",  # a valid ISO string that overflows in UTC
        "9999-12-31T23:59:59-23:59",
        "2026-11-25T14:00:00.000Z" + " " * 100,
        "yesterday",
        None,
        20261125,
    ],
)
def test_parse_time_refuses_what_cannot_be_a_utc_timestamp(value: Any) -> None:
    assert events.parse_time(value) is None


def test_parse_time_answers_utc() -> None:
    assert events.parse_time("2026-11-25T08:00:00-06:00") == T0
    assert events.parse_time("2026-11-25T14:00:00") == T0


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (1042, "1042"),
        ("A-17", "A-17"),
        (10**400, None),
        ("9" * 100, None),
        (True, None),
        ("", None),
    ],
)
def test_order_number_is_bounded(number: Any, expected: str | None) -> None:
    assert events.order_number({"number": number}) == expected


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ({"id": "o-1"}, "o-1"),
        ({"id": "o\x00-1"}, "o-1"),
        ({"id": 4242}, "4242"),
        ({"id": "x" * 1000}, "x" * events.MAX_ID_LENGTH),
        ({"id": ["o-1"]}, events.NO_ORDER_REF),
        ({}, events.NO_ORDER_REF),
        ("garbage", events.NO_ORDER_REF),
    ],
)
def test_order_ref_is_printable_and_bounded(order: Any, expected: str) -> None:
    assert events.order_ref(order) == expected


def _pg_error(cls: type[Exception]) -> Exception:
    return cls("server said no")


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (OSError("connection refused"), True),
        (TimeoutError(), True),
        (_pg_error(asyncpg.exceptions.ConnectionDoesNotExistError), True),
        (_pg_error(asyncpg.exceptions.AdminShutdownError), True),
        (_pg_error(asyncpg.exceptions.SerializationError), True),
        (_pg_error(asyncpg.exceptions.TooManyConnectionsError), True),
        (asyncpg.exceptions.InterfaceError("connection is closed"), True),
        (_pg_error(asyncpg.exceptions.CheckViolationError), False),
        (_pg_error(asyncpg.exceptions.UntranslatableCharacterError), False),
        (_pg_error(asyncpg.exceptions.NumericValueOutOfRangeError), False),
        (_pg_error(asyncpg.exceptions.ProgramLimitExceededError), False),
        (asyncpg.exceptions._base.DataError("invalid input for query argument $3"), False),
        (OverflowError("date value out of range"), False),
        (TypeError("bug"), False),
    ],
)
def test_is_transient_tells_a_down_database_from_one_bad_order(
    exc: Exception, transient: bool
) -> None:
    assert is_transient(exc) is transient


def test_a_page_with_one_unreadable_number_still_reads_and_only_that_order_is_refused() -> None:
    """Python refuses to convert a 5,000-digit integer; the poller's page must still parse
    (else polling stops at it forever), and the one order carrying it is refused."""
    from leadd.providers.shopmonkey import _json_or_none

    page = '{"data": [{"id": "good"}, {"id": "bad", "totalCents": ' + "9" * 5000 + "}]}"
    good, bad = _json_or_none(page)["data"]
    assert events.validate_order(good)["id"] == "good"
    with pytest.raises(events.BadEvent, match="finite"):
        events.validate_order(bad)
