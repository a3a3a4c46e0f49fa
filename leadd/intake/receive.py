"""An order arriving by webhook or by poll: the demo filter, ingestion, and containment of
one order the database refuses.

Only the database being unavailable for everyone leaves these functions (as the database's
exception: the webhook answers 503 and Shopmonkey retries; the poll cycle stops before its
cursor moves). An order the database refuses is that order's failure: recorded in
`rejected_orders` for operators, counted in `leadd_orders_rejected_total`, and skipped.
"""

from __future__ import annotations

from typing import Any

from leadd import metrics
from leadd.errors import describe_error
from leadd.intake import demo
from leadd.intake.events import BadEvent, IngestResult, OrderEvent, order_ref, validate_order
from leadd.intake.ingest import ingest
from leadd.logs import get_logger
from leadd.runtime import Runtime
from leadd.store.errors import is_transient

log = get_logger(__name__)

MAX_REASON_LENGTH = 500


async def receive_webhook(rt: Runtime, event: OrderEvent) -> IngestResult:
    """A verified, validated webhook order event: ignored by demo_mode, or stored. `result`
    is `unstorable` (with the reason) when the database refuses this one order; a created
    lead wakes the enrichment loop. Raises the database's error when it is unavailable."""
    if rt.config.demo_mode:
        reason = demo.filter_reason(event.order)
        if reason:
            metrics.LEADS_INGESTED.labels(event.source, "ignored").inc()
            log.info("webhook.ignored", reason=reason, order_id=event.order_id)
            return IngestResult(None, "ignored", reason=reason)
    try:
        result = await ingest(rt, event)
    except Exception as exc:
        if is_transient(exc):
            raise
        # This one order cannot be stored (a value the database refuses): retrying will not
        # help, and a 5xx would keep Shopmonkey retrying it and flag the webhook as failing.
        log.exception("webhook.order_unstorable", provider="shopmonkey", order_id=event.order_id)
        reason = f"the order could not be stored: {describe_error(exc)}"
        await record_rejection(rt, event.source, event.order, "unstorable", reason)
        return IngestResult(None, "unstorable", reason=reason)
    if result.result == "created":
        rt.wake_enrichment()
    return result


async def receive_polled(rt: Runtime, order: Any) -> str:
    """One polled order through the webhook's validation and ingestion; its result name
    (created, updated, duplicate, stale, ignored, invalid or failed). Raises only when the
    database is unavailable for all."""
    try:
        event = OrderEvent("UPDATE", validate_order(order), "poll")
    except BadEvent as exc:
        await record_rejection(rt, "poll", order, "invalid", str(exc))
        return "invalid"
    if rt.config.demo_mode and demo.filter_reason(event.order):
        return "ignored"
    try:
        result = await ingest(rt, event)
    except Exception as exc:
        if is_transient(exc):
            raise
        log.exception("poll.order_failed", order_id=order_ref(order))
        await record_rejection(rt, "poll", order, "unstorable", describe_error(exc))
        return "failed"
    return result.result


async def record_rejection(rt: Runtime, source: str, order: Any, kind: str, reason: str) -> None:
    """An order refused at intake (`kind`: invalid | unstorable): a `rejected_orders` row for
    operators, counted and logged on its first sighting (the poller's overlap and Shopmonkey's
    retries bring it back). Best effort: refusing the order never depends on recording it."""
    ref = order_ref(order)
    try:
        first = await rt.store.record_rejected_order(
            source=source, order_ref=ref, reason=reason[:MAX_REASON_LENGTH]
        )
    except Exception as exc:
        log.error("order.rejection_not_recorded", source=source, order_id=ref, error=repr(exc))
        return
    if first:
        metrics.ORDERS_REJECTED.labels(source, kind).inc()
        log.warning("order.rejected", source=source, order_id=ref, kind=kind, reason=reason)
    else:
        log.debug("order.rejected_again", source=source, order_id=ref, kind=kind)
