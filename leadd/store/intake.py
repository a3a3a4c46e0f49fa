"""The intake gateway: leads created and moved by Shopmonkey orders, their enrichment, the
poller's lease, cursor and job rows, webhook delivery memory and rejected orders.

One method per operation, keyword parameters, frozen dataclasses (store/intake_models.py) or
plain values out. A change that spans statements is one method and one transaction, with the
lead's row locked first, so it serialises with ops and inbound SMS, which lock the same row.
Queries: sql/intake.sql (and the shared lead-state queries in sql/queries.sql).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from leadd.lifecycle import TERMINAL, can_transition
from leadd.logs import get_logger
from leadd.sequences import PlannedStep
from leadd.store.batch import GroupCommit
from leadd.store.core import StoreCore, Tx, affected
from leadd.store.intake_models import (
    ChatLink,
    Enrichment,
    EnrichmentFailure,
    EnrichmentJob,
    NewLead,
    OrderUpdate,
    SavedEnrichment,
)

log = get_logger(__name__)

# The ordering rule (intake.events.is_newer), applied under the lead's lock to what is stored:
# (stored order_version, stored order_updated_at) -> is the incoming order newer?
NewerThan = Callable[[int | None, dt.datetime | None], bool]

DEMO_FILTERED = "demo_mode.filtered"
# insert_leads' per-lead arrays, in its parameter order ($2..$17).
_NEW_LEAD_COLUMNS = (
    "lead_id", "location_id", "order_id", "order_number", "source", "order_version",
    "order_updated_at", "order_data", "customer_id", "vehicle_id", "cause", "detail",
    "sequence", "now", "replay_digest", "replay_until",
)  # fmt: skip


async def advance_in(
    tx: Tx,
    lead_id: uuid.UUID,
    *,
    target: str,
    cause: str,
    detail: Mapping[str, Any] | None = None,
    actor: str | None = None,
) -> bool:
    """The lifecycle transition inside a caller's unit of work: lock the lead, and move it to
    `target` if lifecycle.can_transition allows it (with its timeline row; a terminal state
    cancels its open touch points). False: no such lead, or not allowed from its state.
    For store methods (intake, the conversations store), and for the inbound SMS webhook's
    transaction until it moves into the conversations store. `actor`: the person who caused
    it (chat, issue 10: staff:<e-mail> confirming a requested time); None for leadd."""
    row = await tx.fetchrow("lock_lead", lead_id)
    if row is None or not can_transition(row["state"], target):
        return False
    await _transition(tx, lead_id, row["state"], target, cause, detail or {}, actor)
    return True


async def _transition(
    tx: Tx,
    lead_id: uuid.UUID,
    current: str,
    target: str,
    cause: str,
    detail: Mapping[str, Any],
    actor: str | None = None,
) -> None:
    """Move a locked lead whose move the caller checked (lifecycle.can_transition)."""
    await tx.execute("set_lead_state", lead_id, target)
    await tx.execute("insert_lead_event", lead_id, current, target, cause, dict(detail), actor)
    if target in TERMINAL:
        await tx.execute("cancel_lead_touchpoints", lead_id, f"lead {target}")
    log.info("lead.state", lead_id=str(lead_id), from_state=current, to_state=target, cause=cause)


class IntakeStore(StoreCore):
    """Leads from Shopmonkey orders: creation, updates, enrichment, the poller's bookkeeping."""

    # ------------------------------------------------------------------ orders

    async def lead_id_by_order(self, order_id: str) -> uuid.UUID | None:
        row = await self._fetchrow("lead_id_by_order", order_id)
        return None if row is None else row["id"]

    async def insert_lead(
        self,
        *,
        lead_id: uuid.UUID,
        location_id: str,
        order_id: str,
        order_number: str | None,
        source: str,
        order_version: int | None,
        order_updated_at: dt.datetime | None,
        order_data: dict[str, Any],
        customer_id: str | None,
        vehicle_id: str | None,
        cause: str,
        detail: Mapping[str, Any],
        sequence: str,
        steps: Sequence[PlannedStep],
        replay_digest: bytes | None,
        replay_until: dt.datetime | None,
        now: dt.datetime,
    ) -> uuid.UUID | None:
        """A new lead in state `new` with its first timeline row and its touch points, due for
        enrichment at `now`; the delivery (`replay_digest`) remembered with it. None when the
        order already has a lead (nothing written). Concurrent calls share one statement and
        one commit (store/batch.py); each returns once its own lead has committed."""
        if self._new_leads is None:
            self._new_leads = GroupCommit(
                self._insert_leads, self._insert_lead, name="insert_leads"
            )
        return await self._new_leads.submit(
            NewLead(
                lead_id,
                location_id,
                order_id,
                order_number,
                source,
                order_version,
                order_updated_at,
                order_data,
                customer_id,
                vehicle_id,
                cause,
                dict(detail),
                sequence,
                tuple(steps),
                replay_digest,
                replay_until,
                now,
            )  # fmt: skip
        )

    _new_leads: GroupCommit[NewLead, uuid.UUID | None] | None = None

    async def close(self) -> None:
        """New leads still queued for a batch are written (or refused) before the pool goes."""
        if self._new_leads is not None:
            await self._new_leads.close()
        await super().close()

    async def _insert_lead(self, n: NewLead) -> uuid.UUID | None:
        row = await self._fetchrow(
            "insert_lead",
            n.lead_id, n.location_id, n.order_id, n.order_number, n.source, n.order_version,
            n.order_updated_at, n.order_data, n.customer_id, n.vehicle_id, n.cause, n.detail,
            n.sequence,
            [s.index for s in n.steps], [s.name for s in n.steps],
            [s.channel for s in n.steps], [s.due_at for s in n.steps],
            n.replay_digest, n.replay_until, n.now,
        )  # fmt: skip
        return None if row is None else row["id"]

    async def _insert_leads(self, batch: Sequence[NewLead]) -> list[uuid.UUID | None]:
        # In order id order: two batches (two daemons) holding the same orders take their
        # unique-index locks in one order, so they wait for each other instead of deadlocking.
        leads = sorted(batch, key=lambda n: n.order_id)

        def column(name: str) -> list[Any]:
            return [getattr(n, name) for n in leads]

        steps = [(n.lead_id, s) for n in leads for s in n.steps]
        rows = await self._fetch(
            "insert_leads",
            *map(column, _NEW_LEAD_COLUMNS),
            [lead for lead, _ in steps],
            [s.index for _, s in steps],
            [s.name for _, s in steps],
            [s.channel for _, s in steps],
            [s.due_at for _, s in steps],
        )
        created = {r["id"] for r in rows}
        return [n.lead_id if n.lead_id in created else None for n in batch]

    async def apply_order_update(
        self,
        *,
        order_id: str,
        order_data: dict[str, Any],
        order_version: int | None,
        order_updated_at: dt.datetime | None,
        customer_id: str | None,
        vehicle_id: str | None,
        newer: NewerThan,
        target: str | None,
        target_if_not_newer: str | None,
        cause: str,
        detail: Mapping[str, Any],
        replay_digest: bytes | None,
        replay_until: dt.datetime | None,
        now: dt.datetime,
    ) -> OrderUpdate:
        """An order event for a lead that exists, in one transaction with the lead locked:
        a delivery stored before (`replay_digest`) changes nothing; an order that is not
        `newer` than the stored one changes nothing, except that it may still move the lead
        to `target_if_not_newer` (a DELETE carrying the row as last stored); a newer order is
        stored and moves the lead to `target` when the lifecycle allows it. Raises
        LookupError when the order has no lead."""
        async with self._tx() as tx:
            row = await tx.fetchrow("lock_lead_by_order", order_id)
            if row is None:
                raise LookupError(f"order {order_id} vanished during ingestion")
            lead_id, state = row["id"], row["state"]
            if replay_digest is not None:
                fresh = await tx.fetchval("remember_delivery", replay_digest, replay_until, now)
                if not fresh:
                    return OrderUpdate(lead_id, state, "replayed")
            stored_version, stored_updated = row["order_version"], row["order_updated_at"]
            if not newer(stored_version, stored_updated):
                late = target_if_not_newer
                if late is not None and can_transition(state, late):
                    await _transition(tx, lead_id, state, late, cause, detail)
                    return OrderUpdate(lead_id, late, "updated")
                return OrderUpdate(lead_id, state, "not_newer", stored_version, stored_updated)
            await tx.execute(
                "update_lead_order",
                lead_id,
                order_data,
                order_version,
                order_updated_at,
                customer_id,
                vehicle_id,
                now,
            )
            if target is not None and can_transition(state, target):
                await _transition(tx, lead_id, state, target, cause, detail)
                state = target
        return OrderUpdate(lead_id, state, "updated")

    async def advance_lead(
        self,
        lead_id: uuid.UUID,
        *,
        target: str,
        cause: str,
        detail: Mapping[str, Any] | None = None,
    ) -> bool:
        """Move a lead forward if the lifecycle allows it (replies, first send, an order first
        seen in a later state), with its timeline row; a terminal state cancels its open touch
        points. False: no such lead, or not allowed from where it is."""
        async with self._tx() as tx:
            return await advance_in(tx, lead_id, target=target, cause=cause, detail=detail)

    async def record_rejected_order(self, *, source: str, order_ref: str, reason: str) -> bool:
        """Keep (or count again) an order refused at intake; True on its first sighting."""
        row = await self._fetchrow("record_rejected_order", source, order_ref, reason)
        return bool(row is not None and row["first"])

    async def prune_deliveries(self, *, now: dt.datetime) -> int:
        """Forget webhook deliveries whose signatures have expired by `now`; how many."""
        return affected(await self._execute("prune_deliveries", now))

    # ------------------------------------------------------------------ enrichment

    async def claim_enrichment(
        self, *, limit: int, lease: float, max_attempts: int, now: dt.datetime
    ) -> list[EnrichmentJob]:
        """Leads whose enrichment is due at `now` (not done, not given up, fewer than
        `max_attempts` claims), leased for `lease` seconds; disjoint between claimers."""
        rows = await self._fetch("claim_enrichment", limit, lease, max_attempts, now)
        return [EnrichmentJob.from_row(r) for r in rows]

    async def save_enrichment(
        self,
        lead_id: uuid.UUID,
        *,
        enrichment: Enrichment,
        chat: ChatLink,
        dedupe: bool,
        dedupe_window: float,
        now: dt.datetime,
    ) -> SavedEnrichment:
        """Store what enrichment learned, the lead's chat session (once) and, with `dedupe`,
        attach the lead to an older open lead of the same phone or e-mail created within
        `dedupe_window` seconds (its scheduled touch points cancelled). Returns the lead it
        was attached to now, if any, and whether a touch point of it is due at `now` (sql:
        save_enrichment says why in one statement)."""
        row = await self._fetchrow(
            "save_enrichment",
            lead_id,
            *_save_args(enrichment, chat.token_hash, dedupe_window),
            dedupe,
            chat.expires_at,
            now,
        )
        if row is None:
            return SavedEnrichment(None, False)
        return SavedEnrichment(row["attached_to"], row["due"])

    async def demo_filter(
        self, lead_id: uuid.UUID, *, enrichment: Enrichment, chat: ChatLink
    ) -> bool:
        """demo_mode met a real person: store what enrichment learned and lose the lead
        (cancelling its touch points) in one transaction, so it is never texted in between.
        True when the lead was moved to `lost`."""
        async with self._tx() as tx:
            await tx.execute(
                "save_enrichment",
                lead_id,
                *_save_args(enrichment, chat.token_hash, 0.0),
                False,
                chat.expires_at,
                chat.expires_at,  # `due` is not asked for: the lead is lost
            )
            return await advance_in(tx, lead_id, target="lost", cause=DEMO_FILTERED)

    async def record_enrichment_failure(
        self,
        lead_id: uuid.UUID,
        *,
        failure_limit: int,
        max_attempts: int,
        retry_at: dt.datetime,
        cancel_touchpoints: bool,
        reason: str,
    ) -> EnrichmentFailure | None:
        """One failed attempt, recorded on the lead (`reason`: words, never values) and
        retried at `retry_at`; at `failure_limit` failures (or its last claim) the lead is
        given up (`failed`, on its timeline) and, with `cancel_touchpoints`, its scheduled
        touch points are cancelled. None: no such lead."""
        row = await self._fetchrow(
            "record_enrichment_failure",
            lead_id,
            failure_limit,
            max_attempts,
            retry_at,
            cancel_touchpoints,
            reason,
        )
        if row is None:
            return None
        return EnrichmentFailure(row["enrichment_status"], row["enrichment_failures"])

    # ------------------------------------------------------------------ the poller

    async def acquire_lease(self, name: str, *, holder: str, ttl: float, now: dt.datetime) -> bool:
        """Take the lease `name` for `ttl` seconds if it is free or expired at `now`, or renew
        it if `holder` has it. False: another holder has it."""
        return await self._fetchrow("acquire_lease", name, holder, ttl, now) is not None

    async def get_cursor(self, name: str) -> dt.datetime | None:
        row = await self._fetchrow("get_cursor", name)
        return None if row is None else row["position"]

    async def set_cursor(self, name: str, *, position: dt.datetime) -> None:
        """Move the cursor forward to `position` (never backwards)."""
        await self._execute("set_cursor", name, position)

    async def start_job(self, job: str) -> int:
        """A job_executions row for one run of `job`; its id."""
        return int(await self._fetchval("start_job", job))

    async def finish_job(
        self, job_id: int, *, status: str, counts: Mapping[str, int], error: str | None
    ) -> None:
        await self._execute("finish_job", job_id, status, dict(counts), error)


def _save_args(e: Enrichment, chat_token_hash: bytes, dedupe_window: float) -> tuple[Any, ...]:
    """save_enrichment's $3..$13."""
    return (
        e.first_name,
        e.last_name,
        e.phone,
        e.email,
        e.vehicle,
        e.services,
        e.status,
        e.retry_at,
        e.error,
        chat_token_hash,
        dedupe_window,
    )
