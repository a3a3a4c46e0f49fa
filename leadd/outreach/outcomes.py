"""What becomes of a claimed touch point that is not sent now: finished (cancelled, skipped,
failed), deferred to a time (not an attempt), rescheduled (an attempt), or found no longer
ours. Each returns the outcome word the loop counts; each change is conditional on the row
still being ours, and one that no longer is says why (`not_ours`) without writing anything.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from leadd import metrics
from leadd.backoff import Backoff
from leadd.config import Config
from leadd.logs import get_logger
from leadd.runtime import Runtime
from leadd.store.outreach_models import TouchPoint

log = get_logger(__name__)


@dataclass(frozen=True)
class Hold:
    """Why a touch point is not sent now: finished in `state` (cancelled, skipped, failed),
    or, with `until`, deferred to then (not an attempt)."""

    state: str
    reason: str
    until: dt.datetime | None = None


def retry_backoff(cfg: Config) -> Backoff:
    """Spacing of retries (and of lookups of a send in doubt): retry_base doubling up to
    retry_cap."""
    return Backoff(base=cfg.touchpoints.retry_base, cap=cfg.touchpoints.retry_cap)


async def hold(rt: Runtime, tp: TouchPoint, held: Hold) -> str:
    if held.until is None:
        return await finish(rt, tp, held.state, held.reason)
    # A deferral is not an attempt: it must not eat into max_attempts or the backoff.
    deferred = await rt.store.defer(
        touch_point_id=tp.id, owner=rt.instance_id, until=held.until, reason=held.reason
    )
    if not deferred:
        return await not_ours(rt, tp, "send")
    log.info("touchpoint.deferred", touch_point_id=tp.id, until=held.until.isoformat())
    return "deferred"


async def finish(rt: Runtime, tp: TouchPoint, state: str, reason: str) -> str:
    finished = await rt.store.finish(
        touch_point_id=tp.id, owner=rt.instance_id, state=state, reason=reason
    )
    if not finished:
        return await not_ours(rt, tp, "send")
    metrics.count_unsent(tp.channel, state)
    log.info(
        "touchpoint.finished",
        touch_point_id=tp.id,
        lead_id=str(tp.lead_id),
        state=state,
        reason=reason,
    )
    return state


async def reschedule(
    rt: Runtime, tp: TouchPoint, reason: str, due_at: dt.datetime | None = None
) -> str:
    """Due again at `due_at`, or now (the runtime clock): a send in doubt found not sent, or
    never gated."""
    rescheduled = await rt.store.reschedule(
        touch_point_id=tp.id, owner=rt.instance_id, due_at=due_at or rt.clock(), reason=reason
    )
    if not rescheduled:
        return await not_ours(rt, tp, "reconcile")
    return "rescheduled"


async def not_ours(rt: Runtime, tp: TouchPoint, stage: str, state: str | None = None) -> str:
    """The row is no longer ours to change: it was cancelled meanwhile (a STOP, a reply)
    or another daemon took over its expired lease. Nothing is written; the outcome says
    which."""
    if state is None:
        state = await rt.store.touchpoint_state(touch_point_id=tp.id) or "deleted"
    if state == "cancelled":
        log.info("touchpoint.cancelled_meanwhile", touch_point_id=tp.id)
        return "cancelled"
    metrics.LEASES_LOST.labels(stage).inc()
    log.warning("touchpoint.lease_lost", touch_point_id=tp.id, state=state, stage=stage)
    return "lost"
