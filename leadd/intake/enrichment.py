"""Enrichment: customer (primary phone and e-mail), vehicle and services for new leads.

Runs off the request path, leased like touch points so two daemons never enrich one lead at
once. Relations embedded in the order (`customer`, `vehicle`, `services`, as the list API
returns them with include[...]) are used first; otherwise the Shopmonkey API is asked. A null
customerId/vehicleId or a 404 is not an error: the lead keeps what is known (`partial`) and is
retried later; touch points go ahead with the channels that are known.

Every value passes the pure boundary (intake/coerce.py) before it is stored or put in a
message. Whatever still goes wrong for one lead is that lead's failure: recorded on it,
counted in `leadd_enrichment_failures_total{reason}`, retried with backoff, and after
FAILURE_LIMIT failures the lead is `failed` with the reason. It never escapes into the loop
that enriches (and texts) every other lead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from leadd import chatlinks, metrics, phones
from leadd.backoff import Backoff
from leadd.errors import describe_error
from leadd.intake import demo
from leadd.intake.coerce import clean_text, customer_fields, priced_services, vehicle_fields
from leadd.logs import get_logger
from leadd.providers import shopmonkey as sm
from leadd.runtime import Runtime
from leadd.store import DB_ERRORS
from leadd.store.intake_models import ChatLink, Enrichment, EnrichmentJob

log = get_logger(__name__)

LEASE_SECONDS = 60.0
MAX_ATTEMPTS = 12
# Failures (not attempts: waiting for a customer to be linked is not failing) before a lead
# is given up as 'failed'. With the default 5 min retry (doubling) that is about 75 min.
FAILURE_LIMIT = 5


async def claim(rt: Runtime, limit: int) -> list[EnrichmentJob]:
    """Leases up to `limit` leads whose enrichment is due by the runtime clock, leads waiting
    for their customer (and acknowledgement) first."""
    return await rt.store.claim_enrichment(
        limit=limit, lease=LEASE_SECONDS, max_attempts=MAX_ATTEMPTS, now=rt.clock()
    )


async def enrich(rt: Runtime, job: EnrichmentJob, *, through: bool = False) -> str | None:
    """One stage of one lead (`through`: every stage, in turn, under this claim); returns the
    status it saved ('contact': its details are due now), None when it failed or the demo
    filter took it. Its failure is recorded on that lead and never leaves here."""
    try:
        return await _enrich_one(rt, job, through=through)
    except (sm.ShopmonkeyError, OSError, TimeoutError) as exc:
        await _defer(rt, job, exc)
    except Exception as exc:
        await _record_failure(rt, job, exc)
    return None


async def enrich_due(rt: Runtime, limit: int = 20) -> int:
    """Enrich leads whose enrichment is due by the runtime clock, one after another; returns
    how many were processed. Only a failure to claim (the database is down for everyone)
    leaves this function. (The enrichment loop runs stages side by side; tests and the CLI
    use this.)"""
    jobs = await claim(rt, limit)
    for job in jobs:
        await enrich(rt, job, through=True)
    return len(jobs)


def _embedded(order: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = order.get(key)
    return value if isinstance(value, dict) else None


async def _enrich_one(rt: Runtime, job: EnrichmentJob, *, through: bool) -> str | None:
    """Stages (issue 11): a 'pending' lead gets its customer first, which is all its
    acknowledgement needs, and is saved as 'contact' (its touch points are released, except
    steps that show the vehicle or services); a 'contact' lead then gets its vehicle and
    services ('done'). A 'partial' lead retries whatever is missing. Relations embedded in
    the order cost no call, so such an order is done in one stage."""
    cfg, client = rt.config, rt.shopmonkey
    order = job.order_data
    stage = job.enrichment_status
    missing: list[str] = []

    customer = _embedded(order, "customer")
    if customer is None and stage != "contact":
        if not job.customer_id:
            missing.append("order has no customer yet")
        elif not client.enabled:
            missing.append("shopmonkey api_key not configured")
        else:
            customer = await client.get_customer(job.customer_id)
            if customer is None:
                missing.append("customer not found (404)")

    vehicle = _embedded(order, "vehicle")
    services_raw = order.get("services") if isinstance(order.get("services"), list) else None
    details_embedded = (vehicle is not None or not job.vehicle_id) and services_raw is not None
    # The first stage stops here unless the details cost nothing or the customer is missing
    # anyway (then there is no acknowledgement to hurry and the lead is retried as a whole).
    details = stage != "pending" or details_embedded or bool(missing) or not client.enabled
    if details:
        if vehicle is None and job.vehicle_id and client.enabled:
            vehicle = await client.get_vehicle(job.vehicle_id)
            if vehicle is None:
                missing.append("vehicle not found (404)")
        elif vehicle is None and job.vehicle_id:
            missing.append("vehicle not fetched (shopmonkey disabled)")
        if services_raw is None and client.enabled:
            services_raw = await client.get_order_services(job.shopmonkey_order_id)

    location = cfg.location(job.location_id) or cfg.locations[0]
    region = phones.region_of(location.phone) if location.phone else None
    person = customer_fields(customer)
    phone = phones.normalize(person["phone"], region or cfg.leads.default_region)
    # Only what this attempt learned: a retry that learns less never erases what is known.
    data: dict[str, Any] = {**person, "phone": phone}
    if vehicle:
        data["vehicle"] = vehicle_fields(vehicle)
    elif not job.vehicle:
        data["vehicle"] = {"description": clean_text(order.get("generatedVehicleName"))}
    if services_raw is not None:
        data["services"] = priced_services(services_raw, location.services)
    status = "partial" if missing else "done" if details else "contact"
    # Going on to the details under this claim keeps its lease; otherwise they are claimed
    # apart (at once), behind every lead still waiting for its customer.
    retry_in = LEASE_SECONDS if through and status == "contact" else None
    saved = await save(
        rt, job, data, error="; ".join(missing) or None, status=status, retry_in=retry_in
    )
    log.info(
        "lead.enriched",
        lead_id=str(job.id),
        status=status,
        phone=phone or job.phone,
        email=data["email"] or job.email,
        missing=missing,
    )
    if saved is None:
        return None
    if through and saved.enrichment_status == "contact":
        return await _enrich_one(rt, saved, through=False)
    return saved.enrichment_status


async def save(
    rt: Runtime,
    job: EnrichmentJob,
    data: dict[str, Any],
    *,
    error: str | None,
    status: str,
    retry_in: float | None = None,
) -> EnrichmentJob | None:
    """Store what one attempt learned (`data`: only what it learned; the rest stays as known)
    with the decisions that must commit with it: the demo filter and the dedupe of people.
    Returns the lead as it now stands (None: the demo filter lost it), and wakes the send
    lane when the save released a touch point that is due."""
    cfg = rt.config
    # 'pending' leads hold their touch points back; after a failed first try let them go with
    # what is known unless Shopmonkey is merely unreachable (then the phone may still come),
    # and never past the last attempt: a lead left 'pending' then would wait forever.
    if status in ("pending", "contact") and job.enrichment_attempts >= MAX_ATTEMPTS:
        status = "partial"

    def known(key: str) -> Any:
        value = data.get(key)
        return getattr(job, key) if value is None else value

    phone, email = known("phone"), known("email")
    if retry_in is None:
        # 'contact' has its details still to fetch: due again at once, behind the customers.
        retry_in = 0.0 if status == "contact" else cfg.leads.enrichment_retry
    retry_at = rt.clock() + dt.timedelta(seconds=retry_in)
    enrichment = Enrichment(
        first_name=known("first_name"),
        last_name=known("last_name"),
        phone=phone,
        email=email,
        vehicle=known("vehicle"),
        services=known("services"),
        status=status,
        retry_at=None if status == "done" else retry_at,
        error=error,
    )
    # chat (issue 10): the lead's chat link, stored as its token's hash, with an expiry
    chat = ChatLink(
        chatlinks.session_hash(cfg, job.id), rt.clock() + dt.timedelta(seconds=cfg.chat.link_ttl)
    )
    # The save is what releases the lead's touch points (status leaves 'pending'), so the
    # decisions that must stop them (demo filter, dedupe) commit with it, never after.
    if cfg.demo_mode and (phone or email) and not demo.is_test_contact(phone, email):
        if status == "contact":  # a lost lead needs no details
            enrichment = dataclasses.replace(enrichment, status="done", retry_at=None)
        await rt.store.demo_filter(job.id, enrichment=enrichment, chat=chat)
        log.info("lead.demo_filtered", lead_id=str(job.id))
        return None
    saved = await rt.store.save_enrichment(
        job.id,
        enrichment=enrichment,
        chat=chat,
        # Decided when the contact is first known; the details stage does not ask again.
        dedupe=bool(phone or email)
        and job.attached_to is None
        and job.enrichment_status != "contact",
        dedupe_window=cfg.leads.dedupe_window,
        now=rt.clock(),
    )
    attached_to = saved.attached_to
    if attached_to is not None:
        log.info("lead.attached", lead_id=str(job.id), attached_to=str(attached_to))
    if status != "pending" and saved.due:
        rt.wake()
    return dataclasses.replace(
        job,
        first_name=enrichment.first_name,
        last_name=enrichment.last_name,
        phone=enrichment.phone,
        email=enrichment.email,
        vehicle=enrichment.vehicle,
        services=enrichment.services,
        enrichment_status=status,
        attached_to=job.attached_to or attached_to,
    )


async def _defer(rt: Runtime, job: EnrichmentJob, exc: Exception) -> None:
    """Shopmonkey unreachable or refusing: keep the lead as it is and retry later."""
    if isinstance(exc, sm.ShopmonkeyAuthError):
        rt.health.failing("shopmonkey", sm.auth_problem(exc))
    metrics.ENRICHMENT_FAILURES.labels("provider").inc()
    log.warning("enrichment.deferred", lead_id=str(job.id), error=f"{type(exc).__name__}: {exc}")
    try:
        await save(
            rt,
            job,
            {},
            error=_describe(exc),
            status=job.enrichment_status,
            retry_in=rt.config.leads.enrichment_retry,
        )
    except Exception as again:
        # The save is what failed (the lead's data, or the database): count it as such.
        await _record_failure(rt, job, again)


async def _record_failure(rt: Runtime, job: EnrichmentJob, exc: Exception) -> None:
    """One lead's enrichment failed unexpectedly: record it on the lead and retry with
    backoff, or give the lead up as 'failed'. The reason stored and shown is the exception
    type in words; the message (which may quote the customer's data) only goes to the log."""
    cfg = rt.config
    reason = _reason(exc)
    metrics.ENRICHMENT_FAILURES.labels(reason).inc()
    log.exception(
        "enrichment.failed", lead_id=str(job.id), reason=reason, error=f"{type(exc).__name__}"
    )
    retry = Backoff(base=cfg.leads.enrichment_retry, cap=max(cfg.leads.enrichment_retry, 3600.0))
    retry_at = rt.clock() + dt.timedelta(seconds=retry.delay(job.enrichment_failures))
    try:
        saved = await rt.store.record_enrichment_failure(
            job.id,
            failure_limit=FAILURE_LIMIT,
            max_attempts=MAX_ATTEMPTS,
            retry_at=retry_at,
            cancel_touchpoints=job.enrichment_status == "pending",
            reason=_describe(exc),
        )
    except Exception as again:
        # Most likely the database is down for everyone; the lead's lease runs out and it is
        # claimed again then. Nothing about this lead may stop the others.
        log.error("enrichment.failure_not_recorded", lead_id=str(job.id), error=repr(again))
        return
    if saved is not None and saved.status == "failed":
        metrics.ENRICHMENT_GIVEN_UP.inc()
        log.error(
            "enrichment.given_up", lead_id=str(job.id), failures=saved.failures, reason=reason
        )


def _reason(exc: BaseException) -> str:
    """The metric label: one of a small fixed set."""
    if isinstance(exc, sm.ShopmonkeyError | OSError | TimeoutError):
        return "provider"
    if isinstance(exc, DB_ERRORS):
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
