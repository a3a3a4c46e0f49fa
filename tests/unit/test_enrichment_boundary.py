"""The enrichment boundary: whatever an order or the Shopmonkey API says about a customer,
vehicle or services becomes bounded, storable, printable values or nothing, and what comes
out can always be normalised, stored and rendered into every default message."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadd import phones, templates
from leadd.config import DEFAULT_SEQUENCE, Service
from leadd.errors import describe_error
from leadd.intake import coerce
from leadd.intake.coerce import (
    clean_email,
    clean_text,
    customer_fields,
    priced_services,
    primary_email,
    primary_phone,
    vehicle_summary,
)
from leadd.intake.coerce import vehicle_fields as vehicle

CATALOG = (Service(name="Oil change", price=49.99), Service(name="Brake inspection", price=459.0))

# --------------------------------------------------------------------------- tables


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Jamie", "Jamie"),
        ("  Zoë  O'Brien ", "Zoë O'Brien"),
        ("Ja\x00mie", "Jamie"),
        ("\ud800Rivera", "Rivera"),
        ("line\nbreak\ttab", "line break tab"),
        ("👨\u200d👩\u200d👧 family", "👨\u200d👩\u200d👧 family"),  # ZWJ emoji kept whole
        ("\x00\x01\x02", None),
        ("   ", None),
        ("", None),
        (42, None),
        (4.2, None),
        (True, None),
        (["Jamie"], None),
        ({"first": "Jamie"}, None),
        (None, None),
    ],
)
def test_clean_text(value: Any, expected: str | None) -> None:
    assert clean_text(value, 100) == expected


def test_clean_text_bounds_length_and_work() -> None:
    assert clean_text("x" * 1_000_000, 100) == "x" * 100
    assert clean_text(" " * 1_000_000 + "late", 100) is None  # bounded work, not a scan


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Jamie.Rivera@Example.com", "jamie.rivera@example.com"),
        (" josé@example.com ", "josé@example.com"),
        ("ja\x00mie@example.com", None),
        ("jamie@example", None),
        ("jamie rivera@example.com", None),
        ("a@b@example.com", None),
        ("x" * 250 + "@example.com", None),
        (12, None),
        (None, None),
    ],
)
def test_clean_email_never_repairs(value: Any, expected: str | None) -> None:
    assert clean_email(value) == expected


def test_customer_fields_drop_what_is_not_a_name() -> None:
    assert customer_fields(
        {
            "firstName": 42,
            "lastName": ["Rivera"],
            "phoneNumbers": [{"number": 5125550123}, {"number": "+15125550123"}],
            "emails": [{"email": {"x": 1}}, {"email": "jamie@example.com"}],
        }
    ) == {
        "first_name": None,
        "last_name": None,
        "phone": "+15125550123",
        "email": "jamie@example.com",
    }
    assert customer_fields("Jamie") == {
        "first_name": None,
        "last_name": None,
        "phone": None,
        "email": None,
    }
    assert customer_fields({"phone": "1" * 100})["phone"] is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"year": 2016, "make": "Honda", "model": "Civic"}, (2016, "2016 Honda Civic")),
        ({"year": "2016 ", "make": "Honda"}, (2016, "2016 Honda")),
        ({"year": "9" * 5000, "make": "Honda"}, (None, "Honda")),
        ({"year": 10**400, "make": "Honda"}, (None, "Honda")),
        ({"year": "²", "make": "Honda"}, (None, "Honda")),
        ({"year": True, "make": 7, "model": ["Civic"]}, (None, None)),
        ({"year": 1885}, (None, None)),
        ({"year": float("inf"), "make": "Hon\x00da"}, (None, "Honda")),
        ("a car", (None, None)),
    ],
)
def test_vehicle_fields(raw: Any, expected: tuple[int | None, str | None]) -> None:
    out = vehicle(raw)
    assert (out["year"], out["description"]) == expected


def test_priced_services_drop_absurd_prices_and_bound_the_list() -> None:
    services = [
        {"name": "Oil change", "totalCents": 10**400},  # catalog price wins anyway
        {"name": "Brakes", "totalCents": 10**400},
        {"name": "Rotors", "totalCents": 12_550},
        {"name": "Free", "totalCents": 0},
        {"name": "Negative", "totalCents": -5},
        {"name": "Float", "totalCents": 99.5},
        {"name": "Bool", "totalCents": True},
        {"name": 12, "totalCents": 100},
        "not a service",
    ]
    assert priced_services(services, CATALOG) == [
        {"name": "Oil change", "price": 49.99},
        {"name": "Brakes", "price": None},
        {"name": "Rotors", "price": 125.5},
        {"name": "Free", "price": None},
        {"name": "Negative", "price": None},
        {"name": "Float", "price": None},
        {"name": "Bool", "price": None},
    ]
    many = [{"name": f"s{i}", "totalCents": 100} for i in range(10_000)]
    assert len(priced_services(many, CATALOG)) == coerce.MAX_SERVICES
    assert priced_services({"name": "x"}, CATALOG) == []


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ValueError("invalid input for $3: 'Jamie Rivera'"), "ValueError: invalid value"),
        (OverflowError("int too large: 10000000000"), "OverflowError: number out of range"),
        (KeyError("jamie@example.com"), "KeyError: missing key or index"),
        (RuntimeError("+15125550123"), "RuntimeError: unexpected error"),
        (ConnectionRefusedError(111, "Connect call failed ('10.0.0.5', 5432)"), "Connection"),
    ],
)
def test_describe_error_never_includes_the_message(exc: Exception, expected: str) -> None:
    text = describe_error(exc)
    assert text.startswith(expected)
    assert str(exc.args[-1]) not in text


# --------------------------------------------------------------------------- properties

_HOSTILE_TEXT = st.sampled_from(
    ["\x00", "\ud800", "\udfff", "²", "9" * 5000, "x" * 20_000, "\u202e", "\n\r\t", "%s{{", ""]
)
_TEXT = st.one_of(st.text(max_size=40), _HOSTILE_TEXT, st.lists(_HOSTILE_TEXT).map("".join))
_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    _TEXT,
)
_JSON = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_TEXT, inner, max_size=4)),
    max_leaves=12,
)


def _maybe(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={k: _JSON for k in keys})


_CUSTOMER = st.one_of(
    _JSON,
    _maybe(["firstName", "lastName", "phone", "email"]).flatmap(
        lambda base: st.fixed_dictionaries(
            {
                "phoneNumbers": st.lists(_maybe(["number", "primary"]), max_size=3),
                "emails": st.lists(_maybe(["email", "primary"]), max_size=3),
            }
        ).map(lambda lists: {**base, **lists})
    ),
)
_VEHICLE = st.one_of(_JSON, _maybe(["year", "make", "model", "submodel"]))
_SERVICES = st.one_of(_JSON, st.lists(st.one_of(_JSON, _maybe(["name", "totalCents"]))))


def _storable(text: str | None, limit: int) -> bool:
    if text is None:
        return True
    text.encode("utf-8")  # no lone surrogates: PostgreSQL would refuse the row
    bad = {"Cc", "Cs"}
    return 0 < len(text) <= limit and not any(unicodedata.category(c) in bad for c in text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(customer=_CUSTOMER, vehicle_raw=_VEHICLE, services=_SERVICES)
def test_anything_becomes_storable_bounded_values_that_render(
    customer: Any, vehicle_raw: Any, services: Any
) -> None:
    person = customer_fields(customer)
    assert _storable(person["first_name"], coerce.MAX_NAME_LENGTH)
    assert _storable(person["last_name"], coerce.MAX_NAME_LENGTH)
    assert _storable(person["email"], coerce.MAX_EMAIL_LENGTH)
    assert person["phone"] is None or len(person["phone"]) <= coerce.MAX_PHONE_LENGTH
    phone = phones.normalize(person["phone"], "US")
    assert phone is None or (phone.startswith("+") and phone[1:].isdigit())

    car = vehicle(vehicle_raw)
    assert car["year"] is None or 1886 <= car["year"] <= 2100
    for part in ("make", "model", "description"):
        assert _storable(car[part], coerce.MAX_TEXT_LENGTH)

    priced = priced_services(services, CATALOG)
    assert len(priced) <= coerce.MAX_SERVICES
    for s in priced:
        assert _storable(s["name"], coerce.MAX_TEXT_LENGTH)
        assert s["price"] is None or 0 < s["price"] <= coerce.MAX_SERVICE_CENTS / 100

    context = templates.build_context(
        customer={"first_name": person["first_name"], "last_name": person["last_name"]},
        vehicle=car,
        services=priced,
        location={"name": "Acme", "phone": None, "address": "", "hours_today": "8-6"},
        tenant_name="Acme",
        order_number=None,
        chat_link=None,
        unsubscribe_link=None,
    )
    for step in DEFAULT_SEQUENCE:
        body = templates.compile_template(step.template).render(context)
        assert len(body) < 2000  # an SMS-sized message, whatever the order said


# --------------------------------------------------------------------------- Shopmonkey's shapes


def test_primary_phone_prefers_primary_entry() -> None:
    customer = {
        "phone": None,
        "phoneNumbers": [
            {"number": "+15125550100", "primary": False},
            {"number": "+15125550123", "primary": True},
        ],
    }
    assert primary_phone(customer) == "+15125550123"


def test_primary_phone_falls_back_to_first_then_none() -> None:
    assert (
        primary_phone(
            {"phoneNumbers": [{"number": "", "primary": True}, {"number": "+15125550100"}]}
        )
        == "+15125550100"
    )
    assert primary_phone({"phoneNumbers": [], "phone": None}) is None
    assert primary_phone({}) is None


def test_primary_email_prefers_primary_entry_then_first() -> None:
    customer = {
        "email": None,
        "emails": [
            {"email": "old@example.com", "primary": False},
            {"email": "jamie.rivera@example.com", "primary": True},
        ],
    }
    assert primary_email(customer) == "jamie.rivera@example.com"
    assert primary_email({"emails": [{"email": "first@example.com"}]}) == "first@example.com"
    assert primary_email({"emails": None, "email": None}) is None


def test_vehicle_summary() -> None:
    assert vehicle_summary(
        {"year": 2016, "make": "Honda", "model": "Civic", "submodel": None, "vin": "1HG"}
    ) == {"year": 2016, "make": "Honda", "model": "Civic", "description": "2016 Honda Civic"}
    assert vehicle_summary({"year": None, "make": "Ford", "model": None}) == {
        "year": None,
        "make": "Ford",
        "model": None,
        "description": "Ford",
    }
    assert vehicle_summary({})["description"] is None
