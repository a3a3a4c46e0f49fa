"""Sending one touch point: gate it (lead state, channel, opt-out, quiet hours, business hours,
frequency cap), render it, send it, record the attempt, and move the lead.

Crash safety: a row is `sending` with a lease before the provider is called, and the
recipient/sender/body are stored first. A `sending` row whose lease expired, or whose send
ended ambiguously (timeout, connection error, 5xx: the provider may have accepted it), is
reconciled before any resend: for SMS, Twilio's message list is searched for it; e-mail has no
lookup API and is resent (at-least-once, with the touch point id in custom_args so events
dedupe).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from leadd import chatlinks as links
from leadd import compliance, leads, metrics, phones, sequences, templates
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
# A person's reply from the staff inbox (leadd.conversations.replies): a touch point whose text
# is written (preset_body), not rendered from a step.
STAFF_REPLY = SequenceStep(name="staff_reply", channel="sms", template="(written by staff)")
FIRST_ACK_GRACE = dt.timedelta(minutes=15)


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
        step = sequences.step_of(cfg, row["sequence"], row["step_index"])
        location = cfg.location(row["location_id"]) or cfg.locations[0]
        if row["preset_body"] is not None:
            # Sent whatever the lead's state or sequence: a person wrote it. Opt-out applies.
            if not row["phone"] or row["attempts"] > cfg.touchpoints.max_attempts:
                reason = "no phone for this lead" if not row["phone"] else "gave up"
                return await self._finish(row, "failed", reason)
            async with self._phone_lock(row["phone"]):
                return await self._deliver(row, STAFF_REPLY, location, row["phone"])
        if step is None:
            return await self._finish(row, "skipped", "step no longer in the sequence config")
        if row["attached_to"] is not None:
            return await self._finish(row, "cancelled", "lead attached to another open lead")
        if row["lead_state"] in leads.TERMINAL:
            return await self._finish(row, "cancelled", f"lead {row['lead_state']}")
        if step.only_in_states and row["lead_state"] not in step.only_in_states:
            return await self._finish(row, "skipped", f"lead is {row['lead_state']}")
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
        self, row: asyncpg.Record, step: SequenceStep, location: Location, address: str
    ) -> str:
        """Opt-out, time windows and cap, render, send, record."""
        cfg = self.cfg
        now = self.clock()
        try:
            subject, body = self._render(row, step, location, now)
        except (templates.TemplateError, KeyError, ValueError, TypeError) as exc:
            await self.db.execute(
                "set_lead_error", row["lead_id"], f"{step.name}: template error: {exc}"
            )
            return await self._finish(row, "failed", f"template error: {exc}")
        sender = (
            (location.sms_from or location.phone or "")
            if step.channel == "sms"
            else (cfg.sendgrid.from_email)
        )
        # One round trip: opt-out, frequency-cap history, and (unless opted out) what is about
        # to be sent, stored before the provider call so a crash can be reconciled.
        gate = await self.db.fetchrow("send_gate", step.channel, address, row["id"], sender, body)
        assert gate is not None
        if gate["opted_out"]:
            return await self._finish(row, "cancelled", f"{step.channel} opted out")

        defer_to = self._defer_until(row, step, location, address, now, list(gate["recent"]))
        if defer_to is not None:
            # A deferral is not an attempt: it must not eat into max_attempts or the backoff.
            await self.db.execute(
                "defer_touchpoint", row["id"], defer_to, "deferred: outside allowed window"
            )
            log.info("touchpoint.deferred", touch_point_id=row["id"], until=defer_to.isoformat())
            return "deferred"

        if step.channel == "sms":
            result = await self.daemon.twilio.send_sms(
                to=address,
                from_=sender,
                body=body,
                status_callback=f"{cfg.http.public_url}/webhooks/twilio/status",
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
            )
        return await self._record(row, step, address, body, result)

    def _defer_until(
        self,
        row: asyncpg.Record,
        step: SequenceStep,
        location: Location,
        address: str,
        now: dt.datetime,
        times: list[dt.datetime],
    ) -> dt.datetime | None:
        """When the step must wait: quiet hours (SMS), business hours, frequency cap (SMS)."""
        cfg = self.cfg
        if row["preset_body"] is not None:
            return None  # quiet hours and the daily cap govern automated messages, not replies
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
                tz = phones.timezone_of(address, location.timezone)
                allowed = self.rules.quiet.next_allowed(now, tz, phones.us_state_of(address))
                if allowed > now:
                    candidates.append(allowed)
            cap = cfg.compliance.max_sms_per_day
            if not compliance.within_cap(times, now, cap):
                candidates.append(compliance.next_slot_under_cap(times, now, cap))
        if step.require_open:
            hours = self.rules.hours[location.id]
            if not hours.is_open(now, location.timezone):
                nxt = hours.next_open(now, location.timezone)
                candidates.append(nxt or now + dt.timedelta(days=1))
        return max(candidates) if candidates else None

    def _render(
        self, row: asyncpg.Record, step: SequenceStep, location: Location, now: dt.datetime
    ) -> tuple[str | None, str]:
        if row["preset_body"] is not None:
            return None, str(row["preset_body"])
        context = self.context(row, location, now)
        body = sequences.compiled(step.template).render(context).strip()
        subject = sequences.compiled(step.subject).render(context).strip() if step.subject else None
        return subject, body

    def context(self, row: asyncpg.Record, location: Location, now: dt.datetime) -> dict[str, Any]:
        cfg = self.cfg
        token = self._chat_token(row)
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

    def _chat_token(self, row: asyncpg.Record) -> str | None:
        return links.link_token(self.cfg, row["lead_id"], row["chat_token_hash"])

    def unsubscribe_url(self, row: asyncpg.Record) -> str | None:
        token = self._chat_token(row)
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

    async def _finish(self, row: asyncpg.Record, state: str, reason: str) -> str:
        await self.db.execute("finish_touchpoint", row["id"], state, reason)
        if state != "cancelled":
            metrics.MESSAGES.labels(
                row["channel"], "skipped" if state == "skipped" else "failed"
            ).inc()
        log.info(
            "touchpoint.finished",
            touch_point_id=row["id"],
            lead_id=str(row["lead_id"]),
            state=state,
            reason=reason,
        )
        return state

    async def _record(
        self, row: asyncpg.Record, step: SequenceStep, address: str, body: str, result: SendResult
    ) -> str:
        db = self.db
        provider = "twilio" if step.channel == "sms" else "sendgrid"
        outcome: str = result.outcome
        metrics.PROVIDER_LATENCY.labels(provider).observe(result.latency)
        if result.outcome == "sent":
            return await self._record_sent(row, step, provider, address, body, result)
        async with db.transaction() as conn:
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
            if result.outcome == "retry":
                if step.channel == "sms" and (
                    result.error_code in AMBIGUOUS_CODES or (result.http_status or 0) >= 500
                ):
                    # The provider may have accepted it: leave it `sending` with a short lease so
                    # the reconciler looks it up before any resend.
                    delay = max(result.retry_after or 0.0, self.retry.delay(row["attempts"] - 1))
                    await conn.execute(
                        Q["extend_leases"],
                        db.tenant_id,
                        self.daemon.instance_id,
                        delay,
                        [row["id"]],
                    )
                elif row["attempts"] >= self.cfg.touchpoints.max_attempts:
                    # Out of attempts: fail now rather than wait out one more backoff first.
                    outcome = "failed"
                    await conn.execute(
                        Q["finish_touchpoint"],
                        db.tenant_id,
                        row["id"],
                        "failed",
                        f"gave up after {row['attempts']} attempts: "
                        f"{result.error_code} {result.error_message}",
                    )
                else:
                    delay = max(result.retry_after or 0.0, self.retry.delay(row["attempts"] - 1))
                    await conn.execute(
                        Q["reschedule_touchpoint"],
                        db.tenant_id,
                        row["id"],
                        _now() + dt.timedelta(seconds=delay),
                        f"retry: {result.error_code} {result.error_message}",
                    )
            else:
                await conn.execute(
                    Q["finish_touchpoint"],
                    db.tenant_id,
                    row["id"],
                    "failed",
                    f"{result.error_code}: {result.error_message}",
                )
                if result.opted_out:
                    await conn.execute(Q["opt_out"], db.tenant_id, "sms", address, "twilio_21610")
                    await conn.execute(
                        Q["cancel_for_address"], db.tenant_id, "sms", address, "opted out (21610)"
                    )
                elif (
                    result.error_code
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
        metrics.MESSAGES.labels(step.channel, outcome).inc()
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
        )
        first = bool(recorded and recorded["moved"])
        if first:
            log.info(
                "lead.state",
                lead_id=str(row["lead_id"]),
                from_state="new",
                to_state="contacted",
                cause=f"{step.channel}.sent",
            )
        metrics.MESSAGES.labels(step.channel, "dry_run" if result.dry_run else "sent").inc()
        if first:
            metrics.SPEED_TO_LEAD.observe((_now() - row["lead_created_at"]).total_seconds())
        return "sent"

    # ------------------------------------------------------------------ reconciliation

    async def reconcile(self, row: asyncpg.Record) -> str:
        """A `sending` row whose send may or may not have happened. Look before resending."""
        db = self.db
        if row["recipient"] is None or row["body"] is None:
            # Died before the provider call: nothing left the machine.
            await db.execute(
                "reschedule_touchpoint", row["id"], _now(), "recovered: not sent before crash"
            )
            return "rescheduled"
        if row["channel"] == "sms" and not self.daemon.twilio.dry_run:
            since = row["prev_claimed_at"] or row["claimed_at"]
            try:
                sid = await self.daemon.twilio.find_sent(
                    to=row["recipient"], from_=row["sender"], since=since, body=row["body"]
                )
            except TwilioError as exc:
                # Cannot tell: keep it leased and ask again later. Never guess.
                log.warning("reconcile.deferred", touch_point_id=row["id"], error=str(exc))
                return "unknown"
            if sid is not None:
                # Recorded exactly like a send that returned normally (same statement).
                await db.fetchrow(
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
                )
                log.info("reconcile.found", touch_point_id=row["id"], sid=sid)
                return "reconciled"
        # Not found (SMS), or e-mail/dry-run (no lookup API): send again. E-mail is at-least-once.
        await db.execute(
            "reschedule_touchpoint",
            row["id"],
            _now(),
            "recovered: resending after reconciliation",
        )
        log.info("reconcile.resend", touch_point_id=row["id"], channel=row["channel"])
        return "rescheduled"
