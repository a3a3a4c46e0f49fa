"""Touch-point loop (the send lane): every `interval`, or at once when woken (an enrichment
released a lead's touch points, a person queued a message), it reconciles sends left in doubt
by a crash, then claims due touch points and sends them with bounded concurrency. A send of its
own that ended ambiguously wakes it reconcile_delay seconds later to be looked up, even in the
middle of a busy cycle. Enrichment is another loop (leadd.loops.enrichment): nothing here
waits for Shopmonkey. A heartbeat extends the leases of rows still in flight, so a slow
(rate-limited) send is never mistaken for a dead daemon's. While Twilio's message list cannot
be read for sends in doubt, /readyz says so. A database outage is waited out with backoff,
not a crash.

It takes the Runtime (what is due is decided on its clock) and, from the daemon that runs it,
the shutdown and wake-up events and a heartbeat.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress

from leadd import metrics, sequences
from leadd.errors import describe_error
from leadd.logs import get_logger
from leadd.loops import idle, wait_out_database
from leadd.outreach import reconcile
from leadd.outreach.send import Sender
from leadd.runtime import Runtime
from leadd.store import DB_ERRORS
from leadd.store.outreach_models import TouchPoint

log = get_logger(__name__)

Beat = Callable[[], None]


def _no_beat() -> None:
    """Without a supervisor: nobody to tell."""


async def run(
    rt: Runtime,
    *,
    shutdown: asyncio.Event,
    wake_event: asyncio.Event,
    beat: Beat,
) -> None:
    engine = Sender(rt)
    engine.in_doubt.wake = wake_event.set  # a send in doubt may be looked up: reconcile now
    interval = rt.config.touchpoints.interval
    next_full = 0.0
    failures = 0
    while not shutdown.is_set():
        wake_event.clear()
        # A wake-up only needs a claim; reconciling expired leases and the due gauge run on
        # the interval (leases expire on that scale), so a burst of leads does not pay for
        # them once per lead.
        full = time.monotonic() >= next_full
        try:
            await run_once(
                rt, engine, full=full, shutdown=shutdown, wake_event=wake_event, beat=beat
            )
            failures = 0
        except DB_ERRORS as exc:
            # Alive, waiting for the database (/readyz says so): the watchdog must not have
            # systemd restart a daemon that a restart cannot help.
            beat()
            failures = await wait_out_database("touchpoints", exc, shutdown, failures)
            continue
        if full:
            next_full = time.monotonic() + interval
        beat()
        metrics.LOOP_LAST_RUN.labels("touchpoints").set(time.time())
        await idle(shutdown, wake_event, interval)


async def run_once(
    rt: Runtime,
    engine: Sender | None = None,
    *,
    full: bool = True,
    shutdown: asyncio.Event | None = None,
    wake_event: asyncio.Event | None = None,
    beat: Beat = _no_beat,
) -> Counter[str]:
    """One cycle: reconcile, then send until nothing is due (or shutdown).

    Sending is a pipeline, not batch-by-batch: up to `concurrency` sends are in flight, and
    a free slot is refilled by the next claim at once. A lead arriving meanwhile (the wake
    event) is claimed without waiting for slow sends already in flight, so one slow or
    rate-limited provider call never holds back a new lead's first message.
    """
    cycle = _Cycle(
        rt,
        engine or Sender(rt),
        shutdown or asyncio.Event(),
        wake_event or asyncio.Event(),
        beat,
    )
    counts: Counter[str] = Counter()
    if full:
        cycle.engine.in_doubt.take()  # this pass claims every expired lease
        reconciled = await reconcile.reconcile_in_doubt(rt, limit=rt.config.touchpoints.batch_size)
        _count_reconciled(counts, reconciled)
    elif cycle.engine.in_doubt.due():
        _count_reconciled(counts, await cycle.reconcile_due())
    await cycle.send_due(counts)
    if full:
        due = await rt.store.count_due(now=rt.clock(), overdue_after=metrics.OVERDUE_AFTER)
        metrics.set_touchpoints_due(
            {"n": due.due, "overdue": due.overdue, "unconfirmed": due.unconfirmed}
        )
    if counts:
        log.info("touchpoints.cycle", **dict(counts))
    return counts


def _count_reconciled(counts: Counter[str], reconciled: Counter[str]) -> None:
    counts.update({f"reconcile:{outcome}": n for outcome, n in reconciled.items()})


class _Cycle:
    def __init__(
        self,
        rt: Runtime,
        engine: Sender,
        shutdown: asyncio.Event,
        wake_event: asyncio.Event,
        beat: Beat,
    ) -> None:
        self.rt, self.engine = rt, engine
        self.shutdown, self.wake_event = shutdown, wake_event
        self.beat = beat
        # Steps that show the vehicle or services wait for them (issue 11: staged enrichment).
        self.need_details = sequences.detail_steps(rt.config)

    async def reconcile_due(self) -> Counter[str]:
        """Look up this daemon's sends in doubt whose reconcile_delay has run out (issue 11:
        seconds after the ambiguous answer, not on the next interval pass)."""
        limit = self.rt.config.touchpoints.batch_size
        return await reconcile.reconcile_due(self.rt, self.engine.in_doubt, limit=limit)

    async def send_due(self, counts: Counter[str]) -> None:
        rt, tp, owner = self.rt, self.rt.config.touchpoints, self.rt.instance_id
        in_flight: dict[asyncio.Task[None], int] = {}  # task -> touch point id
        drained = False  # the last claim found fewer rows than it asked for

        async def one(row: TouchPoint) -> None:
            try:
                if self.shutdown.is_set():
                    # Shutting down: hand unstarted rows back instead of starting new sends.
                    await rt.store.defer(
                        touch_point_id=row.id, owner=owner, until=row.due_at, reason=None
                    )
                    counts["released"] += 1
                    return
                counts[await self.engine.process(row)] += 1
            except Exception:
                # One bad row must not stop the loop; its lease expires and it is reconciled.
                counts["error"] += 1
                log.exception("touchpoint.error", touch_point_id=row.id)

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(tp.lease / 3)
                if in_flight:
                    with suppress(*DB_ERRORS):
                        await rt.store.extend_leases(
                            owner=owner, lease=tp.lease, ids=list(in_flight.values())
                        )

        async def look_up() -> None:
            try:
                _count_reconciled(counts, await self.reconcile_due())
            except DB_ERRORS as exc:  # the rows stay in doubt: the interval pass takes them
                log.warning("touchpoints.reconcile_failed", error=describe_error(exc))
            except Exception:  # as for a send: never let it stop the loop
                counts["error"] += 1
                log.exception("touchpoints.reconcile_failed")

        leases = asyncio.create_task(heartbeat())
        # Lookups of sends in doubt that became due during this (busy) cycle run beside the
        # sends, so a long backlog does not hold them back.
        lookups: asyncio.Task[None] | None = None
        try:
            while True:
                free = tp.concurrency - len(in_flight)
                if not drained and free > 0 and not self.shutdown.is_set():
                    limit = min(tp.batch_size, free)
                    rows = await rt.store.claim_touchpoints(
                        owner=owner,
                        limit=limit,
                        lease=tp.lease,
                        now=rt.clock(),
                        need_details=self.need_details,
                    )
                    for row in rows:
                        in_flight[asyncio.create_task(one(row))] = row.id
                    drained = len(rows) < limit
                    if not drained and len(rows) < free:
                        continue  # more are due and there is room: claim again now
                if not in_flight and lookups is None:
                    return
                woken = asyncio.create_task(self.wake_event.wait())
                waits = {*in_flight, woken} if lookups is None else {*in_flight, woken, lookups}
                try:
                    done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
                for task in done:
                    if task is lookups:
                        lookups, drained = None, False  # a resend may be due now
                    elif task is not woken:
                        in_flight.pop(task)  # type: ignore[arg-type]
                self.beat()  # a long busy cycle is still progress
                if self.wake_event.is_set() and not self.shutdown.is_set():
                    # A lead was released (or a message queued): look for due rows again.
                    self.wake_event.clear()
                    drained = False
                if lookups is None and self.engine.in_doubt.due() and not self.shutdown.is_set():
                    lookups = asyncio.create_task(look_up())
        except asyncio.CancelledError:
            for task in in_flight:  # forced shutdown: do not wait out slow provider calls
                task.cancel()
            if lookups is not None:
                lookups.cancel()  # the rows it holds are reconciled once its lease ends
            raise
        finally:
            pending = [*in_flight, *([lookups] if lookups is not None else [])]
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            leases.cancel()
            with suppress(asyncio.CancelledError):
                await leases
