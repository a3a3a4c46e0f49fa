"""Sending one touch point: render it, wait for a send slot, pass the gate (lead state, opt-out,
quiet hours, business hours, frequency cap), send it, record the attempt, and move the lead.

The gate runs after every wait, immediately before the provider call (the provider client
calls it once it holds the sender's slot), with the clock read then; its database half is one
statement that a concurrent STOP serialises with (queries.sql gate_touchpoint). A send that
was delayed (a retry, a rate-limit wait, a provider's Retry-After) passes the gate again.

Crash safety: a row is `sending` with a lease before the provider is called, and the gate
stores the recipient/sender/body (gated_at) first. A `sending` row whose lease expired, or
whose send ended ambiguously (timeout, connection error, 5xx: the provider may have accepted
it), is reconciled before any resend: for SMS, Twilio's message list is searched for it, and
after MAX_RECONCILE_LOOKUPS failed lookups it is `unknown`, never resent blindly; e-mail has
no lookup API and is resent (at-least-once, with the touch point id in custom_args so events
dedupe). Every state change is conditional on the row being ours and in flight.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from leadd import chatlinks, compliance, lifecycle, metrics, phones, sequences, templates
from leadd.backoff import Backoff
from leadd.config import Config, Location, SequenceStep
from leadd.db import Q
from leadd.logs import get_logger
from leadd.providers.result import SendResult
from leadd.providers.twilio import INVALID_RECIPIENT_CODES, TwilioError

if TYPE_CHECKING:
    from leadd.daemon import Daemon

log = get_logger(__name__)

AMBIGUOUS_CODES = frozenset({"timeout", "connection"})
FIRST_ACK_GRACE = dt.timedelta(minutes=15)
# What _record needs to know of a staff message (ops API, issue 9): an SMS, no template.
STAFF_STEP = SequenceStep(name="staff", channel="sms", delay=0.0, after="created", template="")
# The gate retries when only the lead's state moved under it (new -> contacted); a lead that
# keeps changing is deferred to the next claim instead.
GATE_TRIES = 3
# Failed lookups of one send in doubt before it is given up as `unknown`. They are spaced by
# the touch-point retry backoff (retry_base doubling up to retry_cap): about an hour with the
# defaults (30 s base), so a short Twilio API outage resolves itself.
MAX_RECONCILE_LOOKUPS = 8


@dataclass(frozen=True)
class Hold:
    """Why a touch point is not sent now: finished in `state` (cancelled, skipped, failed),
    or, with `until`, deferred to then (not an attempt)."""

    state: str
    reason: str
    until: dt.datetime | None = None


@dataclass(frozen=True)
class Rules:
    """Compliance objects built once from config."""

    quiet: compliance.QuietHours
    hours: dict[str, compliance.BusinessHours]

    @classmethod
    def from_config(cls, cfg: Config) -> Rules:
        state_rules = {**compliance.DEFAULT_STATE_RULES, **cfg.compliance.state_rules}
        return cls(
            quiet=compliance.QuietHours(cfg.compliance.quiet_hours, state_rules),
            hours={loc.id: compliance.BusinessHours(loc.hours) for loc in cfg.locations},
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Outreach:
    def __init__(self, daemon: Daemon, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.daemon = daemon
        # The lease owner this engine claims and changes rows as.
        self.owner: str = daemon.instance_id
        # Why the last failed lookup failed, worded for /readyz (no customer data).
        self.lookup_problem = ""
        # Compliance decisions (quiet hours, caps, retries) read this clock; tests pin it.
        self.clock = clock or (lambda: _now())
        self._phone_locks: dict[str, list[Any]] = {}  # address -> [asyncio.Lock, users]
        self.cfg = daemon.config
        self.rules = Rules.from_config(self.cfg)
        self.retry = Backoff(
            base=self.cfg.touchpoints.retry_base, cap=self.cfg.touchpoints.retry_cap
        )

    @property
    def db(self) -> Any:
        return self.daemon.db

    # ------------------------------------------------------------------ one claimed row

    async def process(self, row: asyncpg.Record) -> str:
        """Handle one claimed touch point; returns the outcome (for counts and tests)."""
        cfg = self.cfg
        if row["kind"] == "staff":  # ops API (issue 9): a person's message, see _deliver_staff
            return await self._deliver_staff(row)
        step = sequences.step_of(cfg, row["sequence"], row["step_index"])
        location = cfg.location(row["location_id"]) or cfg.locations[0]
        if step is None:
            return await self._finish(row, "skipped", "step no longer in the sequence config")
        hold = self._lead_hold(step, row["lead_state"], row["attached_to"])
        if hold is not None:
            return await self._hold(row, hold)
        if row["attempts"] > cfg.touchpoints.max_attempts:
            return await self._finish(
                row, "failed", f"gave up after {cfg.touchpoints.max_attempts} attempts"
            )

        address = row["phone"] if step.channel == "sms" else row["email"]
        if not address:
            reason = f"no {'phone' if step.channel == 'sms' else 'e-mail'} for this lead"
            await self.db.execute("set_lead_error", row["lead_id"], f"{step.name}: {reason}")
            return await self._finish(
                row, "skipped" if step.skip_if_unavailable else "failed", reason
            )
        if step.channel != "sms":
            return await self._deliver(row, step, location, address)
        # One SMS per phone at a time in this daemon: the frequency cap counts what was sent,
        # so two due steps of one lead sent side by side in a batch would both pass it.
        async with self._phone_lock(address):
            return await self._deliver(row, step, location, address)

    @asynccontextmanager
    async def _phone_lock(self, address: str) -> AsyncIterator[None]:
        entry = self._phone_locks.setdefault(address, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._phone_locks[address]

    async def _deliver(
        self,
        row: asyncpg.Record,
        step: SequenceStep,
        location: Location,
        address: str,
        *,
        staff: bool = False,
    ) -> str:
        """Render, wait for a send slot, pass the gate, send, record. A staff message is sent
        as its author wrote it."""
        cfg = self.cfg
        now = self.clock()
        subject: str | None = None
        if staff:
            body = row["body"]
        else:
            try:
                subject, body = self._render(row, step, location, now)
            except (templates.TemplateError, KeyError, ValueError, TypeError) as exc:
                await self.db.execute(
                    "set_lead_error", row["lead_id"], f"{step.name}: template error: {exc}"
                )
                return await self._finish(row, "failed", f"template error: {exc}")
            # Before waiting for a slot: a row that must wait for its window anyway does not
            # take one from the sends that may go now. The gate decides again after the wait.
            hold = self._window_hold(row, step, location, address, now)
            if hold is not None:
                return await self._hold(row, hold)

        sender = (
            (location.sms_from or location.phone or "")
            if step.channel == "sms"
            else (cfg.sendgrid.from_email)
        )
        refused: list[str] = []  # what the gate did instead of letting the send go

        async def gate() -> bool:
            outcome = await self._gate(row, step, location, address, sender, body, staff=staff)
            if outcome is not None:
                refused.append(outcome)
            return outcome is None

        result: SendResult | None
        if step.channel == "sms":
            result = await self.daemon.twilio.send_sms(
                to=address,
                from_=sender,
                body=body,
                status_callback=f"{cfg.http.public_url}/webhooks/twilio/status",
                gate=gate,
            )
        else:
            result = await self.daemon.sendgrid.send_email(
                to=address,
                to_name=" ".join(x for x in (row["first_name"], row["last_name"]) if x) or None,
                subject=subject or "",
                text=self._email_footer(body, location, row),
                html=None,
                custom_args={"lead_id": str(row["lead_id"]), "touch_point_id": str(row["id"])},
                headers=self._unsubscribe_headers(row),
                gate=gate,
            )
        if result is None:
            return refused[0]
        return await self._record(row, step, address, body, result)

    async def _deliver_staff(self, row: asyncpg.Record) -> str:
        """A message a person wrote (touch_points.kind = 'staff', ops API and inbox): through
        the same gate as every send, held only by the opt-out."""
        limit = self.cfg.touchpoints.max_attempts
        if row["attempts"] > limit:
            return await self._finish(row, "failed", f"gave up after {limit} attempts")
        address = row["phone"]
        if not address:
            return await self._finish(row, "failed", "no phone for this lead")
        location = self.cfg.location(row["location_id"]) or self.cfg.locations[0]
        async with self._phone_lock(address):
            return await self._deliver(row, STAFF_STEP, location, address, staff=True)

    async def _gate(
        self,
        row: asyncpg.Record,
        step: SequenceStep,
        location: Location,
        address: str,
        sender: str,
        body: str,
        *,
        staff: bool = False,
    ) -> str | None:
        """The send gate, run by the provider client after every wait (rate limit, a
        provider's pause) and immediately before its request: None when the row passed and
        is marked in flight, else what became of it (deferred, cancelled, skipped, lost).

        The clock is read here, after the wait, for quiet hours, opening hours and the cap;
        opt-out and lead state are read and the row marked in one statement that a
        concurrent STOP serialises with (queries.sql gate_touchpoint). A staff message (a
        person's reply) is held by the opt-out alone: quiet hours, the daily cap and the
        lead's state govern automated messages.
        """
        expected = row["lead_state"]
        for _ in range(GATE_TRIES):
            now = self.clock()
            hold = None if staff else self._window_hold(row, step, location, address, now)
            if hold is not None:
                return await self._hold(row, hold)
            gate = await self.db.fetchrow(
                "gate_touchpoint",
                step.channel,
                address,
                row["id"],
                sender,
                body,
                self.owner,
                expected,
            )
            if gate is None or gate["state"] != "sending" or gate["claimed_by"] != self.owner:
                # Cancelled while it waited (a STOP, a reply), or no longer ours: whoever
                # changed it has recorded why; there is nothing for us to write.
                return await self._not_ours(row, "send", gate["state"] if gate else "deleted")
            hold = (
                (Hold("cancelled", f"{step.channel} opted out") if gate["opted_out"] else None)
                or (
                    None
                    if staff
                    else self._lead_hold(step, gate["lead_state"], gate["attached_to"])
                )
                or (None if staff else self._cap_hold(step, list(gate["recent"]), now))
            )
            if hold is not None:
                return await self._hold(row, hold)  # also takes back a mark made just now
            if gate["passed"]:
                return None
            # The lead moved on (new -> contacted by a sibling send) and still allows this
            # step: gate again against what it is now.
            expected = gate["lead_state"]
        return await self._hold(
            row, Hold("deferred", "deferred: the lead kept changing", until=self.clock())
        )

    @staticmethod
    def _lead_hold(step: SequenceStep, lead_state: str, attached_to: Any) -> Hold | None:
        """Whether the lead, as it is now, still wants this step."""
        if attached_to is not None:
            return Hold("cancelled", "lead attached to another open lead")
        if lead_state in lifecycle.TERMINAL:
            return Hold("cancelled", f"lead {lead_state}")
        if step.only_in_states and lead_state not in step.only_in_states:
            return Hold("skipped", f"lead is {lead_state}")
        return None

    def _window_hold(
        self,
        row: asyncpg.Record,
        step: SequenceStep,
        location: Location,
        address: str,
        now: dt.datetime,
    ) -> Hold | None:
        """When the step must wait for a time window: quiet hours (SMS), business hours."""
        cfg = self.cfg
        candidates: list[dt.datetime] = []
        if step.channel == "sms":
            # The instant acknowledgement answers the customer's own request, so it may go at
            # any hour, but only while it is instant: one held up by a provider outage (or
            # found late) must not arrive at 11 pm hours after the request.
            first_ack = (
                row["step_index"] == 0
                and step.delay == 0
                and step.after == "created"
                and now - row["lead_created_at"] <= FIRST_ACK_GRACE
            )
            if not (first_ack and cfg.compliance.first_touch_immediate):
                places = phones.places_of(address, location.timezone)
                allowed = self.rules.quiet.next_allowed(now, places)
                if allowed > now:
                    candidates.append(allowed)
        if step.require_open:
            hours = self.rules.hours[location.id]
            if not hours.is_open(now, location.timezone):
                nxt = hours.next_open(now, location.timezone)
                candidates.append(nxt or now + dt.timedelta(days=1))
        if not candidates:
            return None
        return Hold("deferred", "deferred: outside allowed window", until=max(candidates))

    def _cap_hold(
        self, step: SequenceStep, times: list[dt.datetime], now: dt.datetime
    ) -> Hold | None:
        """SMS frequency cap: `times` are this address's recent SMS (gate_touchpoint)."""
        cap = self.cfg.compliance.max_sms_per_day
        if step.channel != "sms" or compliance.within_cap(times, now, cap):
            return None
        until = compliance.next_slot_under_cap(times, now, cap)
        return Hold("deferred", "deferred: frequency cap", until=until)

    def _render(
        self, row: asyncpg.Record, step: SequenceStep, location: Location, now: dt.datetime
    ) -> tuple[str | None, str]:
        context = self.context(row, location, now)
        body = sequences.compiled(step.template).render(context).strip()
        subject = sequences.compiled(step.subject).render(context).strip() if step.subject else None
        return subject, body

    def context(self, row: asyncpg.Record, location: Location, now: dt.datetime) -> dict[str, Any]:
        cfg = self.cfg
        # chat (issue 10): the link token is derived again; only its hash is stored
        token = chatlinks.link_token(cfg, row["lead_id"], row["chat_token_hash"])
        return templates.build_context(
            customer={"first_name": row["first_name"], "last_name": row["last_name"]},
            vehicle=row["vehicle"] or {},
            services=row["services"] or [],
            location={
                "name": location.name,
                "phone": location.phone,
                "address": location.address,
                "hours_today": self.rules.hours[location.id].describe_day(now, location.timezone),
            },
            tenant_name=cfg.tenant.name,
            order_number=row["order_number"],
            chat_link=f"{cfg.chat.base_url}/{token}" if cfg.chat.base_url and token else None,
            unsubscribe_link=self.unsubscribe_url(row),
        )

    def unsubscribe_url(self, row: asyncpg.Record) -> str | None:
        token = row["unsubscribe_token"]
        return f"{self.cfg.http.public_url}/unsubscribe/{token}" if token else None

    def _email_footer(self, body: str, location: Location, row: asyncpg.Record) -> str:
        """CAN-SPAM: every e-mail carries the physical address and a working opt-out."""
        link = self.unsubscribe_url(row)
        lines = [body, "", "--", location.name]
        if location.address:
            lines.append(location.address)
        if link:
            lines.append(f"Unsubscribe: {link}")
        return "\n".join(lines)

    def _unsubscribe_headers(self, row: asyncpg.Record) -> dict[str, str] | None:
        link = self.unsubscribe_url(row)
        if not link:
            return None
        # RFC 8058 one-click unsubscribe (Gmail/Yahoo bulk-sender rules).
        return {
            "List-Unsubscribe": f"<{link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }

    # ------------------------------------------------------------------ outcomes

    async def _hold(self, row: asyncpg.Record, hold: Hold) -> str:
        if hold.until is None:
            return await self._finish(row, hold.state, hold.reason)
        # A deferral is not an attempt: it must not eat into max_attempts or the backoff.
        status = await self.db.execute(
            "defer_touchpoint", row["id"], hold.until, hold.reason, self.owner
        )
        if not _changed(status):
            return await self._not_ours(row, "send")
        log.info("touchpoint.deferred", touch_point_id=row["id"], until=hold.until.isoformat())
        return "deferred"

    async def _finish(self, row: asyncpg.Record, state: str, reason: str) -> str:
        status = await self.db.execute("finish_touchpoint", row["id"], state, reason, self.owner)
        if not _changed(status):
            return await self._not_ours(row, "send")
        metrics.count_unsent(row["channel"], state)
        log.info(
            "touchpoint.finished",
            touch_point_id=row["id"],
            lead_id=str(row["lead_id"]),
            state=state,
            reason=reason,
        )
        return state

    async def _not_ours(self, row: asyncpg.Record, stage: str, state: str | None = None) -> str:
        """The row is no longer ours to change: it was cancelled meanwhile (a STOP, a reply)
        or another daemon took over its expired lease. Nothing is written; the outcome says
        which."""
        if state is None:
            now = await self.db.fetchrow("touchpoint_state", row["id"])
            state = now["state"] if now else "deleted"
        if state == "cancelled":
            log.info("touchpoint.cancelled_meanwhile", touch_point_id=row["id"])
            return "cancelled"
        metrics.LEASES_LOST.labels(stage).inc()
        log.warning("touchpoint.lease_lost", touch_point_id=row["id"], state=state, stage=stage)
        return "lost"

    async def _record(
        self, row: asyncpg.Record, step: SequenceStep, address: str, body: str, result: SendResult
    ) -> str:
        db = self.db
        provider = "twilio" if step.channel == "sms" else "sendgrid"
        outcome: str = result.outcome
        metrics.observe_provider(provider, result)
        if result.outcome == "sent":
            return await self._record_sent(row, step, provider, address, body, result)
        async with db.transaction() as conn:
            # The row first, only while it is ours; the attempt only with it.
            if result.outcome == "retry" and (
                step.channel == "sms"
                and (result.error_code in AMBIGUOUS_CODES or (result.http_status or 0) >= 500)
            ):
                # The provider may have accepted it: leave it `sending` with a short lease so
                # the reconciler looks it up before any resend.
                delay = max(result.retry_after or 0.0, self.retry.delay(row["attempts"] - 1))
                status = await conn.execute(
                    Q["extend_leases"], db.tenant_id, self.owner, delay, [row["id"]]
                )
            elif result.outcome == "retry" and row["attempts"] < self.cfg.touchpoints.max_attempts:
                delay = max(result.retry_after or 0.0, self.retry.delay(row["attempts"] - 1))
                status = await conn.execute(
                    Q["reschedule_touchpoint"],
                    db.tenant_id,
                    row["id"],
                    _now() + dt.timedelta(seconds=delay),
                    f"retry: {result.error_code} {result.error_message}",
                    self.owner,
                )
            else:
                reason = f"{result.error_code}: {result.error_message}"
                if result.outcome == "retry":
                    # Out of attempts: fail now rather than wait out one more backoff first.
                    outcome = "failed"
                    reason = (
                        f"gave up after {row['attempts']} attempts: "
                        f"{result.error_code} {result.error_message}"
                    )
                status = await conn.execute(
                    Q["finish_touchpoint"], db.tenant_id, row["id"], "failed", reason, self.owner
                )
            recorded = _changed(status)
            if recorded:
                await conn.execute(
                    Q["insert_attempt"],
                    db.tenant_id,
                    row["id"],
                    row["lead_id"],
                    step.channel,
                    provider,
                    result.provider_id,
                    result.http_status,
                    result.error_code,
                    result.error_message,
                    result.latency * 1000,
                    result.outcome,
                    result.dry_run,
                )
            # What the provider said about the address holds whoever owns the row now.
            if result.opted_out:
                await conn.execute(Q["opt_out"], db.tenant_id, "sms", address, "twilio_21610")
                await conn.execute(
                    Q["cancel_for_address"], db.tenant_id, "sms", address, "opted out (21610)"
                )
            elif (
                result.outcome == "failed"
                and result.error_code
                and result.error_code.isdigit()
                and int(result.error_code) in INVALID_RECIPIENT_CODES
            ):
                await conn.execute(
                    Q["set_lead_error"],
                    db.tenant_id,
                    row["lead_id"],
                    f"sms: undeliverable number ({result.error_code}: {result.error_message})",
                )
                await conn.execute(
                    Q["cancel_for_address"],
                    db.tenant_id,
                    "sms",
                    address,
                    f"undeliverable number ({result.error_code})",
                )
        if not recorded:
            return await self._not_ours(row, "send")
        metrics.count_send(step.channel, outcome)
        return outcome

    async def _record_sent(
        self,
        row: asyncpg.Record,
        step: SequenceStep,
        provider: str,
        address: str,
        body: str,
        result: SendResult,
    ) -> str:
        """Attempt, sent mark, transcript line and the first send's new -> contacted, in one
        statement (one round trip on the hot path)."""
        recorded = await self.db.fetchrow(
            "record_sent",
            row["id"],
            row["lead_id"],
            step.channel,
            provider,
            result.provider_id,
            result.http_status,
            result.latency * 1000,
            result.dry_run,
            address,
            body,
            f"{step.channel}.sent",
            {"touch_point_id": row["id"]},
            "sent",
            self.owner,
        )
        if not (recorded and recorded["recorded"]):
            # Sent, but the row is no longer ours: whoever holds it now reconciles it and
            # finds this message at the provider. Said loudly: it is the rare case to check.
            log.error(
                "touchpoint.sent_not_recorded",
                touch_point_id=row["id"],
                provider_id=result.provider_id,
            )
            return await self._not_ours(row, "send")
        first = bool(recorded["moved"])
        if first:
            log.info(
                "lead.state",
                lead_id=str(row["lead_id"]),
                from_state="new",
                to_state="contacted",
                cause=f"{step.channel}.sent",
            )
        metrics.count_send(step.channel, "dry_run" if result.dry_run else "sent")
        if first:
            metrics.SPEED_TO_LEAD.observe((_now() - row["lead_created_at"]).total_seconds())
        return "sent"

    # ------------------------------------------------------------------ reconciliation

    async def reconcile(self, row: asyncpg.Record) -> str:
        """A `sending` row whose lease expired (claimed by claim_stale_sending): its send may
        or may not have happened. Look before resending; when the lookup keeps failing, give
        up into `unknown` rather than guess. Every change is conditional on this reconciler
        still owning the row: one whose lease was taken over in turn changes nothing."""
        db = self.db
        if row["gated_at"] is None:
            # Never passed its gate: nothing left the machine.
            return await self._reschedule(row, "recovered: not sent before crash")
        if row["channel"] == "sms" and not self.daemon.twilio.dry_run:
            since = row["prev_claimed_at"] or row["claimed_at"]
            try:
                sid = await self.daemon.twilio.find_sent(
                    to=row["recipient"], from_=row["sender"], since=since, body=row["body"]
                )
            except TwilioError as exc:
                metrics.RECONCILE_LOOKUPS.labels("error").inc()
                return await self._lookup_failed(row, exc)
            metrics.RECONCILE_LOOKUPS.labels("not_found" if sid is None else "found").inc()
            if sid is not None:
                # Recorded exactly like a send that returned normally (same statement).
                recorded = await db.fetchrow(
                    "record_sent",
                    row["id"],
                    row["lead_id"],
                    "sms",
                    "twilio",
                    sid,
                    None,
                    None,
                    False,
                    row["recipient"],
                    row["body"],
                    "sms.sent",
                    {"touch_point_id": row["id"], "reconciled": True},
                    "reconciled",
                    self.owner,
                )
                if not (recorded and recorded["recorded"]):
                    return await self._not_ours(row, "reconcile")
                log.info("reconcile.found", touch_point_id=row["id"], sid=sid)
                metrics.count_send("sms", "sent")
                return "reconciled"
        # Not found (SMS), or e-mail/dry-run (no lookup API): send again. E-mail is at-least-once.
        outcome = await self._reschedule(row, "recovered: resending after reconciliation")
        if outcome == "rescheduled":
            log.info("reconcile.resend", touch_point_id=row["id"], channel=row["channel"])
        return outcome

    async def _reschedule(self, row: asyncpg.Record, reason: str) -> str:
        status = await self.db.execute(
            "reschedule_touchpoint", row["id"], _now(), reason, self.owner
        )
        if not _changed(status):
            return await self._not_ours(row, "reconcile")
        return "rescheduled"

    async def _lookup_failed(self, row: asyncpg.Record, exc: TwilioError) -> str:
        """Twilio could not say whether the send went out. Ask again later, with backoff;
        after MAX_RECONCILE_LOOKUPS failed lookups, give up into `unknown`: visible on the
        row, the lead, a metric and the log; never resent blindly."""
        lookups = row["reconcile_attempts"]
        self.lookup_problem = (
            f"cannot look up sent SMS at Twilio ({_lookup_detail(exc)}); "
            "sends in doubt are not resent"
        )
        if lookups >= MAX_RECONCILE_LOOKUPS:
            reason = (
                f"could not confirm with Twilio after {lookups} lookups "
                f"({_lookup_detail(exc)}); not resent: check Twilio's message log"
            )
            given_up = await self.db.fetchrow(
                "give_up_unconfirmed",
                row["id"],
                self.owner,
                reason,
                f"{row['step_name']}: {reason}",
            )
            if not (given_up and given_up["n"]):
                return await self._not_ours(row, "reconcile")
            metrics.count_send(row["channel"], "unknown")
            log.error(
                "reconcile.gave_up",
                touch_point_id=row["id"],
                lead_id=str(row["lead_id"]),
                lookups=lookups,
                error=str(exc),
            )
            return "unknown"
        delay = self.retry.delay(lookups - 1)
        status = await self.db.execute("extend_leases", self.owner, delay, [row["id"]])
        if not _changed(status):
            return await self._not_ours(row, "reconcile")
        log.warning(
            "reconcile.deferred",
            touch_point_id=row["id"],
            lookups=lookups,
            retry_in=round(delay, 1),
            error=str(exc),
        )
        return "lookup_failed"


def _changed(status: str) -> bool:
    """Whether an UPDATE's status ("UPDATE <n>") says it changed a row."""
    return status.rsplit(" ", 1)[-1] != "0"


def _lookup_detail(exc: TwilioError) -> str:
    # For /readyz too: the status only, never the error text (it may quote a page or a URI).
    return f"HTTP {exc.http_status}" if exc.http_status else "no usable answer"
