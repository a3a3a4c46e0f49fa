"""Sending one claimed touch point: compose it, wait for a send slot, pass the gate (gate.py),
send it, record the attempt and move the lead.

Crash safety: a row is `sending` with a lease before the provider is called, and the gate
stores the recipient/sender/body (gated_at) first. A send that ended ambiguously (timeout,
connection error, 5xx: the provider may have accepted it) stays `sending`, is handed to
reconciliation (reconcile.py) and looked up seconds later, before any resend.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from leadd import metrics, sequences
from leadd.config import Location, SequenceStep
from leadd.logs import get_logger
from leadd.outreach import compose, gate, outcomes, reconcile
from leadd.providers.result import SendResult
from leadd.providers.twilio_wire import INVALID_RECIPIENT_CODES
from leadd.runtime import Runtime
from leadd.store.outreach_models import (
    AddressOutcome,
    Attempt,
    Fail,
    KeepInDoubt,
    RetryAt,
    RowChange,
    TouchPoint,
    WaitForSender,
)

log = get_logger(__name__)

# Transport failures after which the provider may still have taken the message.
AMBIGUOUS_CODES = frozenset({"timeout", "connection"})
# What the send path needs to know of a staff message (ops API): an SMS, no template.
STAFF_STEP = SequenceStep(name="staff", channel="sms", delay=0.0, after="created", template="")


class Sender:
    """Sends the touch points one loop claims. Holds what must outlive one send: the rules
    built from config and one lock per phone number."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.rules = gate.Rules.from_config(rt.config)
        self.retry = outcomes.retry_backoff(rt.config)
        # Sends this daemon handed to reconciliation, and when each may be looked up.
        self.in_doubt = reconcile.InDoubt()
        self._phone_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # lock, [users]

    async def process(self, tp: TouchPoint) -> str:
        """Handle one claimed touch point; returns the outcome (for counts and tests)."""
        rt, cfg = self.rt, self.rt.config
        if tp.kind == "staff":  # ops API: a person's message, see _deliver_staff
            return await self._deliver_staff(tp)
        step = sequences.step_of(cfg, tp.sequence, tp.step_index)
        location = cfg.location(tp.location_id) or cfg.locations[0]
        if step is None:
            return await outcomes.finish(rt, tp, "skipped", "step no longer in the sequence config")
        held = gate.lead_hold(step, tp.lead_state, tp.attached_to)
        if held is not None:
            return await outcomes.hold(rt, tp, held)
        if tp.attempts > cfg.touchpoints.max_attempts:
            limit = cfg.touchpoints.max_attempts
            return await outcomes.finish(rt, tp, "failed", f"gave up after {limit} attempts")

        address = tp.phone if step.channel == "sms" else tp.email
        if not address:
            reason = f"no {'phone' if step.channel == 'sms' else 'e-mail'} for this lead"
            await rt.store.set_lead_error(lead_id=tp.lead_id, error=f"{step.name}: {reason}")
            state = "skipped" if step.skip_if_unavailable else "failed"
            return await outcomes.finish(rt, tp, state, reason)
        if step.channel != "sms":
            return await self._deliver(tp, step, location, address)
        # One SMS per phone at a time in this daemon: the frequency cap counts what was sent,
        # so two due steps of one lead sent side by side in a batch would both pass it.
        async with self._phone_lock(address):
            return await self._deliver(tp, step, location, address)

    @asynccontextmanager
    async def _phone_lock(self, address: str) -> AsyncIterator[None]:
        lock, users = self._phone_locks.setdefault(address, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._phone_locks[address]

    async def _deliver_staff(self, tp: TouchPoint) -> str:
        """A message a person wrote (touch_points.kind = 'staff', ops API and inbox): through
        the same gate as every send, held only by the opt-out."""
        rt, cfg = self.rt, self.rt.config
        limit = cfg.touchpoints.max_attempts
        if tp.attempts > limit:
            return await outcomes.finish(rt, tp, "failed", f"gave up after {limit} attempts")
        if not tp.phone:
            return await outcomes.finish(rt, tp, "failed", "no phone for this lead")
        location = cfg.location(tp.location_id) or cfg.locations[0]
        async with self._phone_lock(tp.phone):
            return await self._deliver(tp, STAFF_STEP, location, tp.phone, staff=True)

    async def _deliver(
        self,
        tp: TouchPoint,
        step: SequenceStep,
        location: Location,
        address: str,
        *,
        staff: bool = False,
    ) -> str:
        """Compose, wait for a send slot, pass the gate, send, record. A staff message is sent
        as its author wrote it."""
        rt, cfg = self.rt, self.rt.config
        now = rt.clock()
        sender = compose.sender(cfg, step, location)
        if staff:
            message = compose.Message(None, tp.body or "")
        else:
            try:
                message = compose.render(
                    cfg, tp, step, location, self.rules.hours[location.id], now
                )
            except compose.RENDER_ERRORS as exc:
                error = f"{step.name}: template error: {exc}"
                await rt.store.set_lead_error(lead_id=tp.lead_id, error=error)
                return await outcomes.finish(rt, tp, "failed", f"template error: {exc}")
        send = gate.Send(tp, step, location, address, sender, message.body, staff=staff)
        if not staff:
            # Before waiting for a slot: a row that must wait for its window anyway does not
            # take one from the sends that may go now. The gate decides again after the wait.
            held = gate.window_hold(cfg, self.rules, send, now)
            if held is not None:
                return await outcomes.hold(rt, tp, held)

        refused: list[str] = []  # what the gate did instead of letting the send go

        async def passes() -> bool:
            outcome = await gate.check(rt, self.rules, send)
            if outcome is not None:
                refused.append(outcome)
            return outcome is None

        result: SendResult | None
        if step.channel == "sms":
            result = await rt.twilio.send_sms(
                to=address,
                from_=sender,
                body=message.body,
                status_callback=compose.status_callback(cfg),
                gate=passes,
            )
        else:
            result = await rt.sendgrid.send_email(
                to=address,
                to_name=compose.recipient_name(tp),
                subject=message.subject or "",
                text=compose.email_text(cfg, message.body, location, tp),
                html=None,
                custom_args=compose.custom_args(tp),
                headers=compose.unsubscribe_headers(cfg, tp),
                gate=passes,
            )
        if result is None:
            return refused[0]
        return await self._record(send, result)

    # ------------------------------------------------------------------ recording

    async def _record(self, send: gate.Send, result: SendResult) -> str:
        rt, tp, channel = self.rt, send.tp, send.step.channel
        provider = "twilio" if channel == "sms" else "sendgrid"
        metrics.observe_provider(provider, result)
        attempt = Attempt(
            channel=channel,
            provider=provider,
            outcome=result.outcome,
            provider_id=result.provider_id,
            http_status=result.http_status,
            error_code=result.error_code,
            error_message=result.error_message,
            latency_ms=result.latency * 1000,
            dry_run=result.dry_run,
        )
        if result.outcome == "sent":
            return await self._record_sent(send, attempt)
        outcome, change = self._after_failure(send, result)
        recorded = await rt.store.record_failed_attempt(
            touch_point_id=tp.id,
            lead_id=tp.lead_id,
            owner=rt.instance_id,
            attempt=attempt,
            change=change,
            address_outcome=_address_outcome(send.address, result),
        )
        if not recorded:
            return await outcomes.not_ours(rt, tp, "send")
        if isinstance(change, KeepInDoubt):
            self.in_doubt.add(change.lookup_in)  # wakes the loop to look it up
        metrics.count_send(channel, outcome)
        return outcome

    def _after_failure(self, send: gate.Send, result: SendResult) -> tuple[str, RowChange]:
        """What becomes of the row after a send that did not go, and the outcome to count."""
        tp, channel = send.tp, send.step.channel
        if result.outcome == "retry" and result.throttled:
            # "Slow down", and nothing was taken: the client has paused the sender (its
            # backoff resets once sends go through again), so the row goes when the pause
            # ends, not after a backoff of its own, and a throttle is not an attempt: a storm
            # of 429s delays messages, it does not fail them.
            wait = max(result.retry_after or 0.0, self._pause(send))
            until = self.rt.clock() + dt.timedelta(seconds=wait)
            return "retry", WaitForSender(
                until, f"retry: {result.error_code} {result.error_message}"
            )
        delay = max(result.retry_after or 0.0, self.retry.delay(tp.attempts - 1))
        if result.outcome == "retry" and (
            channel == "sms"
            and (result.error_code in AMBIGUOUS_CODES or (result.http_status or 0) >= 500)
        ):
            # The provider may have accepted it: it stays `sending` and is looked up in
            # reconcile_delay seconds (seconds, not a lease), and resent only if Twilio does
            # not have it, after the same backoff as any retry.
            retry_at = self.rt.clock() + dt.timedelta(seconds=delay)
            lookup_in = self.rt.config.touchpoints.reconcile_delay
            return result.outcome, KeepInDoubt(lookup_in=lookup_in, retry_at=retry_at)
        if result.outcome == "retry" and tp.attempts < self.rt.config.touchpoints.max_attempts:
            due_at = self.rt.clock() + dt.timedelta(seconds=delay)
            return result.outcome, RetryAt(
                due_at, f"retry: {result.error_code} {result.error_message}"
            )
        if result.outcome == "retry":
            # Out of attempts: fail now rather than wait out one more backoff first.
            return "failed", Fail(
                f"gave up after {tp.attempts} attempts: {result.error_code} {result.error_message}"
            )
        return result.outcome, Fail(f"{result.error_code}: {result.error_message}")

    def _pause(self, send: gate.Send) -> float:
        """Seconds before the provider client sends for this sender again."""
        if send.step.channel == "sms":
            return self.rt.twilio.paused_for(send.sender)
        return self.rt.sendgrid.paused_for()

    async def _record_sent(self, send: gate.Send, attempt: Attempt) -> str:
        """Attempt, sent mark, transcript line and the first send's new -> contacted, in one
        statement (one round trip on the hot path)."""
        rt, tp = self.rt, send.tp
        recorded = await rt.store.record_sent(
            touch_point_id=tp.id,
            lead_id=tp.lead_id,
            owner=rt.instance_id,
            attempt=attempt,
            address=send.address,
            body=send.body,
            detail={"touch_point_id": tp.id},
        )
        if not recorded.recorded:
            # Sent, but the row is no longer ours: whoever holds it now reconciles it and
            # finds this message at the provider. Said loudly: it is the rare case to check.
            log.error(
                "touchpoint.sent_not_recorded",
                touch_point_id=tp.id,
                provider_id=attempt.provider_id,
            )
            return await outcomes.not_ours(rt, tp, "send")
        if recorded.moved:
            log.info(
                "lead.state",
                lead_id=str(tp.lead_id),
                from_state="new",
                to_state="contacted",
                cause=f"{attempt.channel}.sent",
            )
        metrics.count_send(attempt.channel, "dry_run" if attempt.dry_run else "sent")
        if recorded.moved:
            metrics.SPEED_TO_LEAD.observe((rt.clock() - tp.lead_created_at).total_seconds())
        return "sent"


def _address_outcome(address: str, result: SendResult) -> AddressOutcome | None:
    """What the provider said about the address itself: opted out (21610), or a number that
    can never receive our SMS. Either way every pending SMS to it is cancelled."""
    if result.opted_out:
        return AddressOutcome("sms", address, "opted out (21610)", opt_out_reason="twilio_21610")
    code = result.error_code
    if (
        result.outcome == "failed"
        and code
        and code.isdigit()
        and int(code) in INVALID_RECIPIENT_CODES
    ):
        return AddressOutcome(
            "sms",
            address,
            f"undeliverable number ({code})",
            lead_error=f"sms: undeliverable number ({code}: {result.error_message})",
        )
    return None
