"""The enrichment boundary: what an order or the Shopmonkey API says about a customer, vehicle
or services, as bounded, storable, printable values or nothing. Pure functions.

Both sources are signed or authenticated, but neither is trusted to be well-formed. Names
become bounded, printable text or nothing; numbers outside any real range (a price of 10^400,
a model year of 5,000 digits) are dropped. How Shopmonkey lays out a customer (`phoneNumbers[]`
and `emails[]` with a `primary` flag) and a vehicle is read here too, once.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from leadd.config import Service

MAX_NAME_LENGTH = 100
MAX_TEXT_LENGTH = 200
MAX_VEHICLE_PART_LENGTH = 60
MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit
MAX_PHONE_LENGTH = 64
MAX_SERVICES = 50
MAX_SERVICE_CENTS = 100_000_000  # $1,000,000 for one line of an estimate: beyond that, no price
MIN_MODEL_YEAR, MAX_MODEL_YEAR = 1886, 2100
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_YEAR = re.compile(r"[0-9]{4}")
_WHITESPACE_CONTROLS = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85")


# --------------------------------------------------------------------------- text


def clean_text(value: Any, limit: int = MAX_TEXT_LENGTH) -> str | None:
    """`value` as text fit to store and to put in a message, or None.

    Only strings count (a number or a list where a name belongs is no name). Control
    characters, NULs and lone surrogates are dropped (line breaks become spaces), runs of
    white space collapse, and the result is cut to `limit` characters. The work is bounded
    whatever the input's size."""
    if not isinstance(value, str):
        return None
    text = value[: limit * 4]
    if not text.isprintable():
        text = "".join(_printable(c) for c in text)
    text = " ".join(text.split())[:limit].rstrip()
    return text or None


def _printable(char: str) -> str:
    if char.isprintable():
        return char
    if char in _WHITESPACE_CONTROLS or unicodedata.category(char) in ("Zs", "Zl", "Zp"):
        return " "
    # Format characters (zero-width joiners in emoji, accents in some scripts) are part of
    # names; controls, surrogates, private-use and unassigned code points are not.
    return char if unicodedata.category(char) == "Cf" else ""


def clean_email(value: Any) -> str | None:
    """A plausible address, lower-cased, or None. Never repaired: an address with a NUL or
    a space in it is not someone's address with a typo, it is not an address."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) > MAX_EMAIL_LENGTH or not text.isprintable() or not _EMAIL.fullmatch(text):
        return None
    return text.lower()


# --------------------------------------------------------------------------- Shopmonkey's shapes


def primary_phone(customer: Mapping[str, Any]) -> str | None:
    """The customer's primary phone (E.164), else the first one listed, else None.

    Shopmonkey keeps phones in `phoneNumbers[]`; the top-level `phone` is normally null
    but is used as a last resort.
    """
    return _primary(customer.get("phoneNumbers"), "number") or _str_or_none(customer.get("phone"))


def primary_email(customer: Mapping[str, Any]) -> str | None:
    """The customer's primary e-mail, else the first one listed, else None."""
    return _primary(customer.get("emails"), "email") or _str_or_none(customer.get("email"))


def _primary(entries: Any, key: str) -> str | None:
    if not isinstance(entries, list):
        return None
    usable = [e for e in entries if isinstance(e, dict) and _str_or_none(e.get(key))]
    for entry in usable:
        if entry.get("primary") is True:
            return str(entry[key]).strip()
    return str(usable[0][key]).strip() if usable else None


def _str_or_none(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def vehicle_summary(vehicle: Mapping[str, Any]) -> dict[str, Any]:
    """`{year, make, model, description}`; description reads like "2016 Honda Civic Si",
    the same shape as Shopmonkey's `generatedVehicleName`, or None when nothing is known."""
    year_raw = vehicle.get("year")
    if isinstance(year_raw, str) and _YEAR.fullmatch(year_raw.strip()):
        year_raw = int(year_raw.strip())
    # Only a model year a car can have: "²".isdigit() is true and int("9" * 5000) raises.
    year: int | None = None
    if isinstance(year_raw, int) and not isinstance(year_raw, bool):
        year = year_raw if MIN_MODEL_YEAR <= year_raw <= MAX_MODEL_YEAR else None
    make = _str_or_none(vehicle.get("make"))
    model = _str_or_none(vehicle.get("model"))
    submodel = _str_or_none(vehicle.get("submodel"))
    parts = [str(year) if year is not None else None, make, model, submodel]
    description = " ".join(p for p in parts if p) or None
    return {"year": year, "make": make, "model": model, "description": description}


# --------------------------------------------------------------------------- what is stored


def customer_fields(customer: Any) -> dict[str, str | None]:
    """Names, the primary phone as given (not yet normalised) and e-mail of a customer."""
    c: Mapping[str, Any] = customer if isinstance(customer, Mapping) else {}
    raw_phone = primary_phone(c)
    return {
        "first_name": clean_text(c.get("firstName"), MAX_NAME_LENGTH),
        "last_name": clean_text(c.get("lastName"), MAX_NAME_LENGTH),
        "phone": raw_phone if raw_phone and len(raw_phone) <= MAX_PHONE_LENGTH else None,
        "email": clean_email(primary_email(c)),
    }


def vehicle_fields(vehicle: Any) -> dict[str, Any]:
    """`{year, make, model, description}` from a Shopmonkey vehicle, every part bounded."""
    v: Mapping[str, Any] = vehicle if isinstance(vehicle, Mapping) else {}
    parts = {
        k: clean_text(v.get(k), MAX_VEHICLE_PART_LENGTH) for k in ("make", "model", "submodel")
    }
    return vehicle_summary({"year": v.get("year"), **parts})


def priced_services(services: Any, catalog: Sequence[Service]) -> list[dict[str, Any]]:
    """Order services with a price: the catalog's when the name matches, else the order's
    own `totalCents` when it is a real amount, else no price (quoted later)."""
    if not isinstance(services, list):
        return []
    prices = {s.name.strip().lower(): s.price for s in catalog}
    out = []
    for s in services[: MAX_SERVICES * 4]:
        name = clean_text(s.get("name"), MAX_TEXT_LENGTH) if isinstance(s, Mapping) else None
        if name is None:
            continue
        price = prices.get(name.lower())
        cents = s.get("totalCents")
        if price is None and _real_cents(cents):
            price = cents / 100
        out.append({"name": name, "price": price})
        if len(out) == MAX_SERVICES:
            break
    return out


def _real_cents(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_SERVICE_CENTS
