"""Storing an order event: create the lead with its touch points, or apply an update.

Idempotent: an order is one lead however often and however it arrives (webhook, poll, both,
concurrently). A lead only moves forward (leadd.lifecycle); an order not newer than the one
stored changes nothing (events.is_newer, applied under the lead's lock by the store). A signed
webhook delivery is remembered in the transaction that stores it, so a replay of it is
answered `replayed` without touching the lead. Every state change is a `lead_events` row.
"""

from __future__ import annotations

import datetime as dt
import uuid

from leadd import metrics, sequences
from leadd.intake import events
from leadd.intake.events import IngestResult, OrderEvent
from leadd.lifecycle import TERMINAL
from leadd.logs import get_logger
from leadd.runtime import Runtime

log = get_logger(__name__)


async def ingest(rt: Runtime, event: OrderEvent) -> IngestResult:
    """Store an order event idempotently; create the lead (with its touch points) or move it.
    Database errors propagate (the caller tells an unavailable database from one refused
    order: leadd.store.errors.is_transient)."""
    order = event.order
    now = rt.clock()
    target = events.order_target_state(order, event.operation)
    # A first sighting that is not a fresh request (already closed, or an old order that was
    # merely edited today, seen by the poller or an UPDATE) must not start a "thanks for your
    # request" sequence. An INSERT is a new order by definition, however late it arrives.
    created_at = events.parse_time(order.get("createdDate"))
    too_old = (
        event.operation != "INSERT"
        and created_at is not None
        and (now - created_at).total_seconds() > rt.config.leads.max_order_age
    )
    if target in TERMINAL or too_old:
        if await rt.store.lead_id_by_order(event.order_id) is None:
            reason = (
                "order already closed"
                if target in TERMINAL
                else "order created before the lead window (leads.max_order_age)"
            )
            metrics.LEADS_INGESTED.labels(event.source, "ignored").inc()
            return IngestResult(None, "ignored", reason=reason)
    else:
        created = await _create(rt, event, now)
        if created is not None:
            metrics.LEADS_INGESTED.labels(event.source, "created").inc()
            if target is not None:  # e.g. first seen already authorized
                # Not through _update: the order just stored is not newer than itself.
                await rt.store.advance_lead(
                    created, target=target, cause=event.cause, detail={"source": event.source}
                )
            return IngestResult(created, "created", target or "new")
    result = await _update(rt, event, target, now)
    metrics.LEADS_INGESTED.labels(event.source, result.result).inc()
    return result


async def _create(rt: Runtime, event: OrderEvent, now: dt.datetime) -> uuid.UUID | None:
    """The new lead, or None when the order already has one."""
    order, cfg, replay = event.order, rt.config, event.replay
    location = cfg.location_for_shopmonkey(order.get("locationId"))
    sequence, steps = sequences.plan(cfg, location, now)
    lead_id = await rt.store.insert_lead(
        lead_id=uuid.uuid4(),
        location_id=location.id,
        order_id=event.order_id,
        order_number=events.order_number(order),
        source=event.source,
        order_version=events.order_version(order),
        order_updated_at=events.order_updated_at(order),
        order_data=order,
        customer_id=order.get("customerId"),
        vehicle_id=order.get("vehicleId"),
        cause=event.cause if event.source == "webhook" else event.source,
        detail={"source": event.source, "delivery_id": event.delivery_id},
        sequence=sequence,
        steps=steps,
        replay_digest=None if replay is None else replay.digest,
        replay_until=None if replay is None else replay.until,
        now=now,
    )
    if lead_id is None:
        return None
    metrics.LEADS_CREATED.labels(event.source, location.id).inc()
    log.info(
        "lead.created",
        lead_id=str(lead_id),
        order_id=event.order_id,
        source=event.source,
        location=location.id,
    )
    return lead_id


async def _update(
    rt: Runtime, event: OrderEvent, target: str | None, now: dt.datetime
) -> IngestResult:
    order, replay = event.order, event.replay
    update = await rt.store.apply_order_update(
        order_id=event.order_id,
        order_data=order,
        order_version=events.order_version(order),
        order_updated_at=events.order_updated_at(order),
        customer_id=order.get("customerId"),
        vehicle_id=order.get("vehicleId"),
        newer=lambda version, updated: events.is_newer(order, version, updated),
        target=target,
        # A DELETE may carry the row as last stored (same version): the deletion itself is
        # still news. `lost` is terminal, so this never moves a lead backwards.
        target_if_not_newer="lost" if event.operation == "DELETE" else None,
        cause=event.cause,
        detail={"source": event.source},
        replay_digest=None if replay is None else replay.digest,
        replay_until=None if replay is None else replay.until,
        now=now,
    )
    if update.outcome == "not_newer":
        same = events.is_same(order, update.stored_version, update.stored_updated_at)
        return IngestResult(update.lead_id, "duplicate" if same else "stale", update.state)
    return IngestResult(update.lead_id, update.outcome, update.state)
