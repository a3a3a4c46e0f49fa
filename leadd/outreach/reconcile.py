"""Reconciling sends in doubt: a `sending` row whose lease expired (its daemon died mid-send,
or its send ended ambiguously: timeout, connection error, 5xx) may or may not have reached the
customer. Look before resending: for SMS, Twilio's message list is searched for it, and after
MAX_RECONCILE_LOOKUPS failed lookups it is `unknown`, never resent blindly. E-mail has no
lookup API and is resent (at-least-once, with the touch point id in custom_args so events
dedupe). Every change is conditional on this reconciler still owning the row: one whose lease
was taken over in turn changes nothing.

How soon: a dead daemon's rows wait out its lease (nobody can tell it died). A send that ended
ambiguously is handed over by its sender with a lease of `touchpoints.reconcile_delay`
(seconds), and `InDoubt` wakes the sender's loop as that runs out, so the lookup runs then,
by the same claim as any other (claim_stale_sending), not on the next interval pass. A failed
lookup hands the row over again for the next one, after a backoff; once the list answers a
lookup again, every row waiting so is looked up on the next pass instead.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import Counter
from collections.abc import Callable

from leadd import metrics
from leadd.logs import get_logger
from leadd.outreach import outcomes
from leadd.providers.twilio_wire import TwilioError
from leadd.runtime import Runtime
from leadd.store.outreach_models import Attempt, TouchPoint

log = get_logger(__name__)

# Failed lookups of one send in doubt before it is given up as `unknown`. They are spaced by
# the touch-point retry backoff (retry_base doubling up to retry_cap): about an hour with the
# defaults (30 s base), so a short Twilio API outage resolves itself.
MAX_RECONCILE_LOOKUPS = 8
# /readyz, while sends in doubt wait on a message list that cannot be read.
HEALTH_KEY = "twilio"


# The loop is woken this long after a lookup became due: the lease it waits for ends on the
# database's clock, measured from before the sender's statement returned, so a lookup started
# later finds it expired; the margin only absorbs a timer that fires a hair early.
_WAKE_MARGIN = 0.01


def _nobody() -> None:
    """No loop to wake: the next interval pass reconciles."""


class InDoubt:
    """This daemon's own sends handed to reconciliation, by when each may be looked up
    (monotonic seconds). The send loop sets `wake` (its wake-up event) and reconciles while
    `due()`; a lookup another daemon made first leaves nothing for it to claim."""

    def __init__(self) -> None:
        self.wake: Callable[[], None] = _nobody
        self._at: list[float] = []

    def add(self, delay: float) -> None:
        heapq.heappush(self._at, time.monotonic() + delay)
        asyncio.get_running_loop().call_later(delay + _WAKE_MARGIN, self.wake)

    def due(self) -> bool:
        return bool(self._at) and self._at[0] <= time.monotonic()

    def take(self) -> None:
        """The lookups due now are being made (one pass claims every expired lease)."""
        now = time.monotonic()
        while self._at and self._at[0] <= now:
            heapq.heappop(self._at)


async def reconcile_due(rt: Runtime, in_doubt: InDoubt, *, limit: int) -> Counter[str]:
    """Reconcile every expired lease now, `limit` rows per claim, once this daemon's own
    sends in doubt may be looked up (`in_doubt.due()`)."""
    in_doubt.take()
    counts: Counter[str] = Counter()
    while True:
        claimed = await reconcile_in_doubt(rt, limit=limit)
        counts.update(claimed)
        if claimed.total() < limit:
            return counts


async def reconcile_in_doubt(rt: Runtime, *, limit: int) -> Counter[str]:
    """Claim up to `limit` sends in doubt and reconcile each; returns the outcomes. /readyz
    names a Twilio message list that could not be read in this pass while sends wait on it;
    a pass without such failures (nothing left in doubt) clears it."""
    counts: Counter[str] = Counter()
    lease = rt.config.touchpoints.lease
    listed = 0  # lookups Twilio answered
    for tp in await rt.store.claim_stale_sending(owner=rt.instance_id, lease=lease, limit=limit):
        outcome = await reconcile(rt, tp)
        counts[outcome] += 1
        if _looked_up(rt, tp) and outcome in ("reconciled", "rescheduled"):
            listed += 1
    if listed:
        # The list answers: what waits for a lookup after a failed one need not wait out a
        # backoff that grew while it did not (the next pass takes it).
        expedited = await rt.store.expedite_lookups()
        if expedited:
            log.info("reconcile.expedited", rows=expedited)
    if not (counts["lookup_failed"] or counts["unknown"]):
        rt.health.ok(HEALTH_KEY)
    return counts


def _looked_up(rt: Runtime, tp: TouchPoint) -> bool:
    """Whether reconciling this row asks Twilio's list (an SMS that passed its gate)."""
    return tp.channel == "sms" and tp.gated_at is not None and not rt.twilio.dry_run


async def reconcile(rt: Runtime, tp: TouchPoint) -> str:
    """One row claimed by claim_stale_sending: reconciled (found at Twilio and recorded as
    sent), rescheduled (not sent: due again now), lookup_failed (ask again later), unknown
    (given up), or lost/cancelled (no longer ours)."""
    if tp.gated_at is None:
        # Never passed its gate: nothing left the machine.
        return await outcomes.reschedule(rt, tp, "recovered: not sent before crash")
    if _looked_up(rt, tp):
        assert tp.recipient is not None and tp.sender is not None  # stored by the gate
        since = tp.prev_claimed_at or tp.claimed_at
        assert since is not None  # a `sending` row was claimed
        try:
            sid = await rt.twilio.find_sent(
                to=tp.recipient, from_=tp.sender, since=since, body=tp.body
            )
        except TwilioError as exc:
            metrics.RECONCILE_LOOKUPS.labels("error").inc()
            return await _lookup_failed(rt, tp, exc)
        metrics.RECONCILE_LOOKUPS.labels("not_found" if sid is None else "found").inc()
        if sid is not None:
            # Recorded exactly like a send that returned normally (same statement).
            recorded = await rt.store.record_sent(
                touch_point_id=tp.id,
                lead_id=tp.lead_id,
                owner=rt.instance_id,
                attempt=Attempt(channel="sms", provider="twilio", outcome="reconciled",
                                provider_id=sid),
                address=tp.recipient,
                body=tp.body or "",
                detail={"touch_point_id": tp.id, "reconciled": True},
            )  # fmt: skip
            if not recorded.recorded:
                return await outcomes.not_ours(rt, tp, "reconcile")
            log.info("reconcile.found", touch_point_id=tp.id, sid=sid)
            metrics.count_send("sms", "sent")
            return "reconciled"
    # Not found (SMS), or e-mail/dry-run (no lookup API): send again. E-mail is at-least-once.
    # Not before the retry backoff of an ambiguous answer (release_in_doubt set due_at to it);
    # a crashed send's due_at is already past: now.
    outcome = await outcomes.reschedule(
        rt, tp, "recovered: resending after reconciliation", max(rt.clock(), tp.due_at)
    )
    if outcome == "rescheduled":
        log.info("reconcile.resend", touch_point_id=tp.id, channel=tp.channel)
    return outcome


async def _lookup_failed(rt: Runtime, tp: TouchPoint, exc: TwilioError) -> str:
    """Twilio could not say whether the send went out. Ask again later, with backoff;
    after MAX_RECONCILE_LOOKUPS failed lookups, give up into `unknown`: visible on the
    row, the lead, a metric and the log; never resent blindly."""
    lookups = tp.reconcile_attempts
    rt.health.failing(
        HEALTH_KEY,
        f"cannot look up sent SMS at Twilio ({_lookup_detail(exc)}); sends in doubt are not resent",
    )
    if lookups >= MAX_RECONCILE_LOOKUPS:
        reason = (
            f"could not confirm with Twilio after {lookups} lookups "
            f"({_lookup_detail(exc)}); not resent: check Twilio's message log"
        )
        given_up = await rt.store.give_up_unconfirmed(
            touch_point_id=tp.id,
            owner=rt.instance_id,
            reason=reason,
            lead_error=f"{tp.step_name}: {reason}",
        )
        if not given_up:
            return await outcomes.not_ours(rt, tp, "reconcile")
        metrics.count_send(tp.channel, "unknown")
        log.error(
            "reconcile.gave_up",
            touch_point_id=tp.id,
            lead_id=str(tp.lead_id),
            lookups=lookups,
            error=str(exc),
        )
        return "unknown"
    # Handed over again, as after the ambiguous answer: looked up once the backoff runs out,
    # or as soon as the list answers another lookup (expedite_lookups).
    delay = outcomes.retry_backoff(rt.config).delay(lookups - 1)
    handed = await rt.store.release_in_doubt(
        touch_point_id=tp.id, owner=rt.instance_id, lookup_in=delay, retry_at=tp.due_at
    )
    if not handed:
        return await outcomes.not_ours(rt, tp, "reconcile")
    log.warning(
        "reconcile.deferred",
        touch_point_id=tp.id,
        lookups=lookups,
        retry_in=round(delay, 1),
        error=str(exc),
    )
    return "lookup_failed"


def _lookup_detail(exc: TwilioError) -> str:
    # For /readyz too: the status only, never the error text (it may quote a page or a URI).
    return f"HTTP {exc.http_status}" if exc.http_status else "no usable answer"
