"""Enrichment: customer (primary phone and e-mail), vehicle and services for new leads.

Runs off the request path, leased like touch points so two daemons never enrich one lead at
once. Relations embedded in the order (`customer`, `vehicle`, `services`, as the list API
returns them with include[...]) are used first; otherwise the Shopmonkey API is asked. A null
customerId/vehicleId or a 404 is not an error: the lead keeps what is known (`partial`) and is
retried later; touch points go ahead with the channels that are known.

Both sources are signed or authenticated, but neither is trusted to be well-formed: every
value passes the pure functions below (`customer_fields`, `vehicle_fields`, `priced_services`)
before it is stored or put in a message. Names become bounded, printable text or nothing;
numbers outside any real range (a price of 10^400, a model year of 5,000 digits) are dropped.
Whatever still goes wrong for one lead is that lead's failure: recorded on it, counted in
`leadd_enrichment_failures_total{reason}`, retried with backoff, and after FAILURE_LIMIT
failures the lead is `failed` with the reason. It never escapes into the loop that enriches
(and texts) every other lead.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from leadd import chatlinks, leads, metrics, phones
from leadd.backoff import Backoff
from leadd.db import Q
from leadd.errors import describe_error
from leadd.logs import get_logger
from leadd.providers import shopmonkey as sm

if TYPE_CHECKING:
    from leadd.config import Service
    from leadd.daemon import Daemon

log = get_logger(__name__)

LEASE_SECONDS = 60.0
MAX_ATTEMPTS = 12
# Failures (not attempts: waiting for a customer to be linked is not failing) before a lead
# is given up as 'failed'. With the default 5 min retry (doubling) that is about 75 min.
FAILURE_LIMIT = 5
MAX_NAME_LENGTH = 100
MAX_TEXT_LENGTH = 200
MAX_VEHICLE_PART_LENGTH = 60
MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit
MAX_PHONE_LENGTH = 64
MAX_SERVICES = 50
MAX_SERVICE_CENTS = 100_000_000  # $1,000,000 for one line of an estimate: beyond that, no price
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_WHITESPACE_CONTROLS = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85")


# --------------------------------------------------------------------------- the boundary


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


def customer_fields(customer: Any) -> dict[str, str | None]:
    """Names, the primary phone as given (not yet normalised) and e-mail of a customer."""
    c: Mapping[str, Any] = customer if isinstance(customer, Mapping) else {}
    raw_phone = sm.primary_phone(c)
    return {
        "first_name": clean_text(c.get("firstName"), MAX_NAME_LENGTH),
        "last_name": clean_text(c.get("lastName"), MAX_NAME_LENGTH),
        "phone": raw_phone if raw_phone and len(raw_phone) <= MAX_PHONE_LENGTH else None,
        "email": clean_email(sm.primary_email(c)),
    }


def vehicle_fields(vehicle: Any) -> dict[str, Any]:
    """`{year, make, model, description}` from a Shopmonkey vehicle, every part bounded."""
    v: Mapping[str, Any] = vehicle if isinstance(vehicle, Mapping) else {}
    parts = {
        k: clean_text(v.get(k), MAX_VEHICLE_PART_LENGTH) for k in ("make", "model", "submodel")
    }
    return sm.vehicle_summary({"year": v.get("year"), **parts})


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


# --------------------------------------------------------------------------- the loop


async def enrich_due(daemon: Daemon, limit: int = 20) -> int:
    """Enrich leads whose enrichment is due; returns how many were processed. A failure of
    one lead is recorded on that lead; only a failure to claim (the database is down for
    everyone) leaves this function."""
    db = daemon.db
    assert db is not None
    rows = await db.fetch("claim_enrichment", limit, LEASE_SECONDS, MAX_ATTEMPTS)
    for row in rows:
        try:
            await _enrich_one(daemon, row)
        except (sm.ShopmonkeyError, OSError, TimeoutError) as exc:
            await _defer(daemon, row, exc)
        except Exception as exc:
            await _record_failure(daemon, row, exc)
    return len(rows)


async def _defer(daemon: Daemon, row: asyncpg.Record, exc: Exception) -> None:
    """Shopmonkey unreachable or refusing: keep the lead as it is and retry later."""
    if isinstance(exc, sm.ShopmonkeyAuthError):
        daemon.provider_problems["shopmonkey"] = sm.auth_problem(exc)
    metrics.ENRICHMENT_FAILURES.labels("provider").inc()
    log.warning("enrichment.deferred", lead_id=str(row["id"]), error=f"{type(exc).__name__}: {exc}")
    try:
        await _save(daemon, row, {}, error=_describe(exc), status=row["enrichment_status"])
    except Exception as again:
        # The save is what failed (the lead's data, or the database): count it as such.
        await _record_failure(daemon, row, again)


async def _record_failure(daemon: Daemon, row: asyncpg.Record, exc: Exception) -> None:
    """One lead's enrichment failed unexpectedly: record it on the lead and retry with
    backoff, or give the lead up as 'failed'. The reason stored and shown is the exception
    type in words; the message (which may quote the customer's data) only goes to the log."""
    db, cfg = daemon.db, daemon.config
    assert db is not None
    reason = _reason(exc)
    metrics.ENRICHMENT_FAILURES.labels(reason).inc()
    log.exception(
        "enrichment.failed", lead_id=str(row["id"]), reason=reason, error=f"{type(exc).__name__}"
    )
    failures = row["enrichment_failures"]
    retry = Backoff(base=cfg.leads.enrichment_retry, cap=max(cfg.leads.enrichment_retry, 3600.0))
    retry_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=retry.delay(failures))
    try:
        saved = await db.fetchrow(
            "record_enrichment_failure",
            row["id"],
            FAILURE_LIMIT,
            MAX_ATTEMPTS,
            retry_at,
            row["enrichment_status"] == "pending",
            _describe(exc),
        )
    except Exception as again:
        # Most likely the database is down for everyone; the lead's lease runs out and it is
        # claimed again then. Nothing about this lead may stop the others.
        log.error("enrichment.failure_not_recorded", lead_id=str(row["id"]), error=repr(again))
        return
    if saved is not None and saved["enrichment_status"] == "failed":
        metrics.ENRICHMENT_GIVEN_UP.inc()
        log.error(
            "enrichment.given_up",
            lead_id=str(row["id"]),
            failures=saved["enrichment_failures"],
            reason=reason,
        )


def _reason(exc: BaseException) -> str:
    """The metric label: one of a small fixed set."""
    if isinstance(exc, sm.ShopmonkeyError | OSError | TimeoutError):
        return "provider"
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return "database"
    if isinstance(exc, ValueError | TypeError | ArithmeticError | LookupError):
        return "data"
    return "internal"


def _describe(exc: BaseException) -> str:
    """What went wrong, in words, without values. Shopmonkey's errors are worded by our
    client and name no customer data (a path with an id at most)."""
    if isinstance(exc, sm.ShopmonkeyError):
        return f"{type(exc).__name__}: {exc}"[:500]
    return describe_error(exc)


async def _enrich_one(daemon: Daemon, row: asyncpg.Record) -> None:
    cfg, client = daemon.config, daemon.shopmonkey
    order: dict[str, Any] = row["order_data"]
    missing: list[str] = []

    customer = order.get("customer") if isinstance(order.get("customer"), dict) else None
    if customer is None:
        if not row["customer_id"]:
            missing.append("order has no customer yet")
        elif not client.enabled:
            missing.append("shopmonkey api_key not configured")
        else:
            customer = await client.get_customer(row["customer_id"])
            if customer is None:
                missing.append("customer not found (404)")

    vehicle = order.get("vehicle") if isinstance(order.get("vehicle"), dict) else None
    if vehicle is None and row["vehicle_id"] and client.enabled:
        vehicle = await client.get_vehicle(row["vehicle_id"])
        if vehicle is None:
            missing.append("vehicle not found (404)")
    elif vehicle is None and row["vehicle_id"]:
        missing.append("vehicle not fetched (shopmonkey disabled)")

    services_raw = order.get("services") if isinstance(order.get("services"), list) else None
    if services_raw is None and client.enabled:
        services_raw = await client.get_order_services(row["shopmonkey_order_id"])

    location = cfg.location(row["location_id"]) or cfg.locations[0]
    region = phones.region_of(location.phone) if location.phone else None
    person = customer_fields(customer)
    phone = phones.normalize(person["phone"], region or cfg.leads.default_region)
    # Only what this attempt learned: a retry that learns less never erases what is known.
    data: dict[str, Any] = {**person, "phone": phone}
    if vehicle:
        data["vehicle"] = vehicle_fields(vehicle)
    elif not row["vehicle"]:
        data["vehicle"] = {"description": clean_text(order.get("generatedVehicleName"))}
    if services_raw is not None:
        data["services"] = priced_services(services_raw, location.services)
    status = "partial" if missing else "done"
    await _save(daemon, row, data, error="; ".join(missing) or None, status=status)
    log.info(
        "lead.enriched",
        lead_id=str(row["id"]),
        status=status,
        phone=phone or row["phone"],
        email=data["email"] or row["email"],
        missing=missing,
    )
    daemon.wake_touchpoints.set()


async def _save(
    daemon: Daemon, row: asyncpg.Record, data: dict[str, Any], *, error: str | None, status: str
) -> None:
    db = daemon.db
    assert db is not None
    retry = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=daemon.config.leads.enrichment_retry)
    # 'pending' leads hold their touch points back; after a failed first try let them go with
    # what is known unless Shopmonkey is merely unreachable (then the phone may still come),
    # and never past the last attempt: a lead left 'pending' then would wait forever.
    if status == "pending" and row["enrichment_attempts"] >= MAX_ATTEMPTS:
        status = "partial"

    def known(key: str) -> Any:
        value = data.get(key)
        return row[key] if value is None else value

    cfg = daemon.config
    phone, email = known("phone"), known("email")
    args = (
        row["id"],
        known("first_name"),
        known("last_name"),
        phone,
        email,
        known("vehicle"),
        known("services"),
        status,
        None if status == "done" else retry,
        error,
        # chat (issue 10): the hash of the lead's chat-link token, never the token
        chatlinks.session_hash(cfg, row["id"]),
        cfg.leads.dedupe_window,
    )
    link_ttl = cfg.chat.link_ttl  # chat (issue 10): $15, how long the chat link works
    # The save is what releases the lead's touch points (status leaves 'pending'), so the
    # decisions that must stop them (demo filter, dedupe) commit with it, never after.
    if cfg.demo_mode and (phone or email) and not leads.is_test_contact(phone, email):
        async with db.transaction() as conn:
            await conn.execute(Q["save_enrichment"], db.tenant_id, *args, False, link_ttl)
            await leads.advance(db, row["id"], "lost", "demo_mode.filtered", conn=conn)
        log.info("lead.demo_filtered", lead_id=str(row["id"]))
        return
    dedupe = bool(phone or email) and row["attached_to"] is None
    saved = await db.fetchrow("save_enrichment", *args, dedupe, link_ttl)
    if saved is not None and saved["attached_to"] is not None:
        log.info("lead.attached", lead_id=str(row["id"]), attached_to=str(saved["attached_to"]))
