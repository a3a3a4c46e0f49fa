"""The outreach gateway: claiming touch points, the send gate, and recording what became of a
send (sql/outreach.sql).

One method per operation, keyword parameters, frozen dataclasses out (store/outreach_models.py).
Every change of a claimed row is conditional on the row being in flight and owned by `owner`
and says whether it changed it: a sender or reconciler that lost its lease, or whose row a STOP
cancelled, changes nothing. Due-ness is decided on the caller's clock (`now`); leases on the
database's (sql/outreach.sql says why).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, assert_never

from leadd.store.core import StoreCore, Tx, affected
from leadd.store.inbound import OptOutStep, opt_out_in
from leadd.store.outreach_models import (
    AddressOutcome,
    Attempt,
    DueCounts,
    Fail,
    GateResult,
    KeepInDoubt,
    RetryAt,
    RowChange,
    SentRecord,
    TouchPoint,
    WaitForSender,
)


class OutreachStore(StoreCore):
    """What the send loop and the outreach services read and write."""

    # ------------------------------------------------------------------ claiming

    async def claim_touchpoints(
        self,
        *,
        owner: str,
        limit: int,
        lease: float,
        now: dt.datetime,
        need_details: Sequence[str] = (),
    ) -> list[TouchPoint]:
        """Lease up to `limit` touch points due at `now` to `owner` for `lease` seconds.
        Steps named in `need_details` ('sequence:index') wait while their lead's vehicle and
        services are still being fetched."""
        rows = await self._fetch("claim_touchpoints", owner, lease, limit, now, list(need_details))
        return [TouchPoint.from_row(r) for r in rows]

    async def claim_stale_sending(
        self, *, owner: str, limit: int, lease: float
    ) -> list[TouchPoint]:
        """Lease to `owner` up to `limit` rows left `sending` under an expired lease, for
        reconciliation (each claim counts one lookup in `reconcile_attempts`)."""
        rows = await self._fetch("claim_stale_sending", owner, lease, limit)
        return [TouchPoint.from_row(r) for r in rows]

    async def release_in_doubt(
        self, *, touch_point_id: int, owner: str, lookup_in: float, retry_at: dt.datetime
    ) -> bool:
        """Hand a send in doubt over to reconciliation: looked up in `lookup_in` seconds by
        whoever claims it then, resent at `retry_at` at the earliest (KeepInDoubt)."""
        status = await self._execute("release_in_doubt", touch_point_id, owner, lookup_in, retry_at)
        return affected(status) > 0

    async def expedite_lookups(self) -> int:
        """Sends in doubt waiting for another lookup become claimable now (the message list
        answers again); returns how many."""
        return affected(await self._execute("expedite_lookups"))

    async def extend_leases(self, *, owner: str, lease: float, ids: Sequence[int]) -> int:
        """Renew `owner`'s leases on rows still in flight; returns how many were renewed."""
        return affected(await self._execute("extend_leases", owner, lease, list(ids)))

    # ------------------------------------------------------------------ the send

    async def gate_touchpoint(
        self,
        *,
        touch_point_id: int,
        owner: str,
        channel: str,
        address: str,
        sender: str,
        body: str,
        lead_state: str,
        now: dt.datetime,
    ) -> GateResult | None:
        """The send gate's one statement: the facts under the row lock, and the in-flight
        mark when they allow it (`passed`). None: the row no longer exists."""
        row = await self._fetchrow(
            "gate_touchpoint", channel, address, touch_point_id, sender, body, owner,
            lead_state, now,
        )  # fmt: skip
        return GateResult.from_row(row) if row is not None else None

    async def record_sent(
        self,
        *,
        touch_point_id: int,
        lead_id: uuid.UUID,
        owner: str,
        attempt: Attempt,
        address: str,
        body: str,
        detail: dict[str, Any],
    ) -> SentRecord:
        """An accepted send (attempt.outcome 'sent', or 'reconciled' for a lost send found
        at the provider): the sent mark, the attempt, the transcript line and the lead's
        first new -> contacted (cause `<channel>.sent`, with `detail`), in one statement."""
        row = await self._fetchrow(
            "record_sent",
            touch_point_id,
            lead_id,
            attempt.channel,
            attempt.provider,
            attempt.provider_id,
            attempt.http_status,
            attempt.latency_ms,
            attempt.dry_run,
            address,
            body,
            f"{attempt.channel}.sent",
            detail,
            attempt.outcome,
            owner,
        )
        assert row is not None  # the statement always returns its one counting row
        return SentRecord(recorded=row["recorded"] > 0, moved=row["moved"] > 0)

    async def record_failed_attempt(
        self,
        *,
        touch_point_id: int,
        lead_id: uuid.UUID,
        owner: str,
        attempt: Attempt,
        change: RowChange,
        address_outcome: AddressOutcome | None = None,
    ) -> bool:
        """A send that did not go (retry, failure, or in doubt), in one transaction: the
        row's `change` while it is ours, the attempt only with it, and what the provider said
        about the address (`address_outcome`), which holds whoever owns the row now.
        Returns whether the row was ours (and the attempt recorded)."""
        async with self._tx() as tx:
            recorded = await _change_row(tx, touch_point_id, owner, change)
            if recorded:
                await tx.execute(
                    "insert_attempt",
                    touch_point_id,
                    lead_id,
                    attempt.channel,
                    attempt.provider,
                    attempt.provider_id,
                    attempt.http_status,
                    attempt.error_code,
                    attempt.error_message,
                    attempt.latency_ms,
                    attempt.outcome,
                    attempt.dry_run,
                )
            if address_outcome is not None:
                await _apply_address_outcome(tx, lead_id, address_outcome)
        return recorded

    # ------------------------------------------------------------------ other outcomes

    async def reschedule(
        self, *, touch_point_id: int, owner: str, due_at: dt.datetime, reason: str
    ) -> bool:
        """Back to `scheduled` at `due_at` (a retry or a resend: the claim was an attempt)."""
        status = await self._execute("reschedule_touchpoint", touch_point_id, due_at, reason, owner)
        return affected(status) > 0

    async def defer(
        self, *, touch_point_id: int, owner: str, until: dt.datetime, reason: str | None
    ) -> bool:
        """Back to `scheduled` at `until` without counting the claim as an attempt."""
        status = await self._execute("defer_touchpoint", touch_point_id, until, reason, owner)
        return affected(status) > 0

    async def finish(self, *, touch_point_id: int, owner: str, state: str, reason: str) -> bool:
        """Ended without a send: `state` is failed, skipped or cancelled."""
        status = await self._execute("finish_touchpoint", touch_point_id, state, reason, owner)
        return affected(status) > 0

    async def give_up_unconfirmed(
        self, *, touch_point_id: int, owner: str, reason: str, lead_error: str
    ) -> bool:
        """A send in doubt that could not be confirmed: `unknown`, the reason on the row and
        `lead_error` on the lead."""
        row = await self._fetchrow("give_up_unconfirmed", touch_point_id, owner, reason, lead_error)
        return bool(row and row["n"])

    async def touchpoint_state(self, *, touch_point_id: int) -> str | None:
        """The row's state now (None: deleted), for a change that did not match."""
        row = await self._fetchrow("touchpoint_state", touch_point_id)
        return row["state"] if row is not None else None

    async def set_lead_error(self, *, lead_id: uuid.UUID, error: str) -> None:
        """Why the lead cannot be reached as its sequence wants (shown to operators)."""
        await self._execute("set_lead_error", lead_id, error)

    # ------------------------------------------------------------------ gauges

    async def count_due(self, *, now: dt.datetime, overdue_after: float) -> DueCounts:
        """Scheduled rows due at `now`, those due more than `overdue_after` seconds before
        it, and sends in doubt given up as `unknown`."""
        row = await self._fetchrow("count_due_touchpoints", now, overdue_after)
        assert row is not None  # an aggregate always returns its row
        return DueCounts(due=row["n"], overdue=row["overdue"], unconfirmed=row["unconfirmed"])


async def _change_row(tx: Tx, touch_point_id: int, owner: str, change: RowChange) -> bool:
    match change:
        case KeepInDoubt(lookup_in=lookup_in, retry_at=retry_at):
            status = await tx.execute(
                "release_in_doubt", touch_point_id, owner, lookup_in, retry_at
            )
        case RetryAt(due_at=due_at, reason=reason):
            status = await tx.execute(
                "reschedule_touchpoint", touch_point_id, due_at, reason, owner
            )
        case WaitForSender(until=until, reason=reason):
            status = await tx.execute("defer_touchpoint", touch_point_id, until, reason, owner)
        case Fail(reason=reason):
            status = await tx.execute("finish_touchpoint", touch_point_id, "failed", reason, owner)
        case _:
            assert_never(change)
    return affected(status) > 0


async def _apply_address_outcome(tx: Tx, lead_id: uuid.UUID, outcome: AddressOutcome) -> None:
    if outcome.lead_error is not None:
        await tx.execute("set_lead_error", lead_id, outcome.lead_error)
    if outcome.opt_out_reason is not None:  # the one opt-out step (store/inbound.py)
        reason, cancel = outcome.opt_out_reason, outcome.cancel_reason
        await opt_out_in(tx, OptOutStep(outcome.channel, outcome.address, reason, cancel))
    else:
        await tx.execute(
            "cancel_for_address", outcome.channel, outcome.address, outcome.cancel_reason
        )
