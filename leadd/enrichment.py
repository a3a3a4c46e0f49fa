"""Enrichment: customer (primary phone and e-mail), vehicle and services for new leads.

Runs off the request path, leased like touch points so two daemons never enrich one lead at
once. Relations embedded in the order (`customer`, `vehicle`, `services`, as the list API
returns them with include[...]) are used first; otherwise the Shopmonkey API is asked. A null
customerId/vehicleId or a 404 is not an error: the lead keeps what is known (`partial`) and is
retried later; touch points go ahead with the channels that are known.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import asyncpg

from leadd import chatlinks as links
from leadd import leads, phones
from leadd.db import Q
from leadd.logs import get_logger
from leadd.providers import shopmonkey as sm

if TYPE_CHECKING:
    from leadd.daemon import Daemon

log = get_logger(__name__)

LEASE_SECONDS = 60.0
MAX_ATTEMPTS = 12


async def enrich_due(daemon: Daemon, limit: int = 20) -> int:
    """Enrich leads whose enrichment is due; returns how many were processed."""
    db = daemon.db
    assert db is not None
    rows = await db.fetch("claim_enrichment", limit, LEASE_SECONDS, MAX_ATTEMPTS)
    for row in rows:
        try:
            await _enrich_one(daemon, row)
        except (sm.ShopmonkeyError, OSError, TimeoutError) as exc:
            # Shopmonkey unreachable or refusing: keep the lead pending and retry later.
            if isinstance(exc, sm.ShopmonkeyAuthError):
                daemon.provider_problems["shopmonkey"] = f"authentication failed: {exc}"
            await _save(
                daemon,
                row,
                {},
                error=f"{type(exc).__name__}: {exc}",
                status=row["enrichment_status"],
            )
            log.warning("enrichment.deferred", lead_id=str(row["id"]), error=str(exc))
    return len(rows)


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
    phone = phones.normalize(sm.primary_phone(customer or {}), region or cfg.leads.default_region)
    email_raw = sm.primary_email(customer or {})
    email = email_raw.strip().lower() if email_raw else None
    # Only what this attempt learned: a retry that learns less never erases what is known.
    data: dict[str, Any] = {
        "first_name": (customer or {}).get("firstName"),
        "last_name": (customer or {}).get("lastName"),
        "phone": phone,
        "email": email,
    }
    if vehicle:
        data["vehicle"] = sm.vehicle_summary(vehicle)
    elif not row["vehicle"]:
        data["vehicle"] = {"description": order.get("generatedVehicleName")}
    if services_raw is not None:
        data["services"] = _priced(services_raw, location.services)
    status = "partial" if missing else "done"
    await _save(daemon, row, data, error="; ".join(missing) or None, status=status)
    log.info(
        "lead.enriched",
        lead_id=str(row["id"]),
        status=status,
        phone=phone or row["phone"],
        email=email or row["email"],
        missing=missing,
    )
    daemon.wake_touchpoints.set()


def _priced(services: list[Any], catalog: Any) -> list[dict[str, Any]]:
    """Order services with a price: the catalog's when the name matches, else the order's."""
    prices = {s.name.strip().lower(): s.price for s in catalog}
    out = []
    for s in services:
        if not isinstance(s, dict) or not isinstance(s.get("name"), str):
            continue
        price = prices.get(s["name"].strip().lower())
        cents = s.get("totalCents")
        if price is None and isinstance(cents, int) and not isinstance(cents, bool) and cents > 0:
            price = cents / 100
        out.append({"name": s["name"], "price": price})
    return out


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
        links.session_hash(cfg, row["id"]),
        cfg.leads.dedupe_window,
    )
    # The save is what releases the lead's touch points (status leaves 'pending'), so the
    # decisions that must stop them (demo filter, dedupe) commit with it, never after.
    if cfg.demo_mode and (phone or email) and not leads.is_test_contact(phone, email):
        async with db.transaction() as conn:
            await conn.execute(Q["save_enrichment"], db.tenant_id, *args, False, cfg.chat.link_ttl)
            await leads.advance(db, row["id"], "lost", "demo_mode.filtered", conn=conn)
        log.info("lead.demo_filtered", lead_id=str(row["id"]))
        return
    dedupe = bool(phone or email) and row["attached_to"] is None
    saved = await db.fetchrow("save_enrichment", *args, dedupe, cfg.chat.link_ttl)
    if saved is not None and saved["attached_to"] is not None:
        log.info("lead.attached", lead_id=str(row["id"]), attached_to=str(saved["attached_to"]))
