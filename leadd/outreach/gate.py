"""The send gate: whether a claimed touch point may go now, decided after every wait.

The provider client runs `check` once it holds the sender's rate-limit slot (and again after
any pause the provider imposed), immediately before its request, with the clock read then:
quiet hours, opening hours and the SMS cap on the runtime clock; opt-out and lead state read,
and the row marked in flight, in one statement that a concurrent STOP serialises with
(sql/outreach.sql gate_touchpoint). A send that was delayed passes the gate again.

A staff message (a person's reply, ops API) is held by the opt-out alone: quiet hours, the
daily cap and the lead's state govern automated messages.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from leadd import compliance, consent, lifecycle, phones
from leadd.config import Config, Location, SequenceStep
from leadd.outreach import outcomes
from leadd.outreach.outcomes import Hold
from leadd.runtime import Runtime
from leadd.store.outreach_models import TouchPoint

# The instant acknowledgement may go at any hour only this long after the lead arrived.
FIRST_ACK_GRACE = dt.timedelta(minutes=15)
# The gate retries when only the lead's state moved under it (new -> contacted); a lead that
# keeps changing is deferred to the next claim instead.
GATE_TRIES = 3


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


@dataclass(frozen=True)
class Send:
    """One send about to go: the claimed row, its step, and what would be sent."""

    tp: TouchPoint
    step: SequenceStep
    location: Location
    address: str
    sender: str
    body: str
    staff: bool = False


async def check(rt: Runtime, rules: Rules, send: Send) -> str | None:
    """None when the row passed and is marked in flight (send it now), else what became of
    it (deferred, cancelled, skipped, lost)."""
    tp, step = send.tp, send.step
    expected = tp.lead_state
    for _ in range(GATE_TRIES):
        now = rt.clock()
        held = None if send.staff else window_hold(rt.config, rules, send, now)
        if held is not None:
            return await outcomes.hold(rt, tp, held)
        gate = await rt.store.gate_touchpoint(
            touch_point_id=tp.id,
            owner=rt.instance_id,
            channel=step.channel,
            address=send.address,
            sender=send.sender,
            body=send.body,
            lead_state=expected,
            now=now,
        )
        if gate is None or gate.state != "sending" or gate.claimed_by != rt.instance_id:
            # Cancelled while it waited (a STOP, a reply), or no longer ours: whoever
            # changed it has recorded why; there is nothing for us to write.
            return await outcomes.not_ours(rt, tp, "send", gate.state if gate else "deleted")
        held = (
            (Hold("cancelled", f"{step.channel} opted out") if gate.opted_out else None)
            or (None if send.staff else lead_hold(step, gate.lead_state, gate.attached_to))
            or (None if send.staff else cap_hold(rt.config, step, gate.recent, now))
        )
        if held is not None:
            return await outcomes.hold(rt, tp, held)  # also takes back a mark made just now
        if gate.passed:
            return None
        # The lead moved on (new -> contacted by a sibling send) and still allows this
        # step: gate again against what it is now.
        expected = gate.lead_state
    return await outcomes.hold(
        rt, tp, Hold("deferred", "deferred: the lead kept changing", until=rt.clock())
    )


def lead_hold(step: SequenceStep, lead_state: str, attached_to: uuid.UUID | None) -> Hold | None:
    """Whether the lead, as it is now, still wants this step."""
    if attached_to is not None:
        return Hold("cancelled", "lead attached to another open lead")
    if lead_state in lifecycle.TERMINAL:
        return Hold("cancelled", f"lead {lead_state}")
    if step.only_in_states and lead_state not in step.only_in_states:
        return Hold("skipped", f"lead is {lead_state}")
    return None


def window_hold(cfg: Config, rules: Rules, send: Send, now: dt.datetime) -> Hold | None:
    """When the step must wait for a time window: quiet hours (SMS), business hours."""
    tp, step, location = send.tp, send.step, send.location
    candidates: list[dt.datetime] = []
    if step.channel == "sms":
        # The instant acknowledgement answers the customer's own request, so it may go at
        # any hour, but only while it is instant: one held up by a provider outage (or
        # found late) must not arrive at 11 pm hours after the request.
        first_ack = (
            tp.step_index == 0
            and step.delay == 0
            and step.after == "created"
            and now - tp.lead_created_at <= FIRST_ACK_GRACE
        )
        if not (first_ack and cfg.compliance.first_touch_immediate):
            places = phones.places_of(send.address, location.timezone)
            allowed = rules.quiet.next_allowed(now, places)
            if allowed > now:
                candidates.append(allowed)
    if step.require_open:
        hours = rules.hours[location.id]
        if not hours.is_open(now, location.timezone):
            nxt = hours.next_open(now, location.timezone)
            candidates.append(nxt or now + dt.timedelta(days=1))
    if not candidates:
        return None
    return Hold("deferred", "deferred: outside allowed window", until=max(candidates))


def cap_hold(
    cfg: Config, step: SequenceStep, times: Sequence[dt.datetime], now: dt.datetime
) -> Hold | None:
    """SMS frequency cap: `times` are this address's recent SMS (gate_touchpoint)."""
    cap = cfg.compliance.max_sms_per_day
    if step.channel != "sms" or consent.within_cap(times, now, cap):
        return None
    until = consent.next_slot_under_cap(times, now, cap)
    return Hold("deferred", "deferred: frequency cap", until=until)
