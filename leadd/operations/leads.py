"""Use cases on leads: list, show, move, pause, resume, and a staff message."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from leadd.lifecycle import STATES, TERMINAL
from leadd.operations import params
from leadd.operations.deps import OpsDeps
from leadd.operations.errors import BadRequest, Conflict, NotFound, Unprocessable
from leadd.store.models import (
    LeadDetail,
    LeadSearch,
    LeadSummary,
    PauseChange,
    StaffMessage,
    StateChange,
)

# What a person may set; contacted and engaged follow from messages, never by hand.
OPERATOR_STATES = ("qualified", "appointment_set", "completed", "lost")
MAX_REASON = 500
MAX_SMS_BODY = 1600  # Twilio's limit for one message body
MAX_Q = 100


@dataclass(frozen=True)
class LeadList:
    leads: tuple[LeadSummary, ...]
    next_cursor: str | None  # opaque; None on the last page


async def list_leads(
    deps: OpsDeps,
    *,
    state: str | None = None,
    location: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    q: str | None = None,
    cursor: str | None = None,
    limit: int = params.DEFAULT_LIMIT,
) -> LeadList:
    """Leads newest first, filtered; `cursor` is the previous page's next_cursor."""
    if state is not None and state not in STATES:
        raise BadRequest("state", f"expected one of {', '.join(STATES)}, got {state[:40]!r}")
    params.check_location(deps.config, location)
    if since is not None and until is not None and since >= until:
        raise BadRequest("until", "must be later than since")
    if not 1 <= limit <= params.MAX_LIMIT:
        raise BadRequest("limit", f"expected an integer from 1 to {params.MAX_LIMIT}")
    page = await deps.store.list_leads(
        state=state,
        location=location,
        since=since,
        until=until,
        q=_search(deps, q),
        cursor=params.decode_lead_cursor(cursor) if cursor is not None else None,
        limit=limit,
    )
    nxt = params.encode_lead_cursor(page.next_cursor) if page.next_cursor else None
    return LeadList(page.leads, nxt)


def _search(deps: OpsDeps, q: str | None) -> LeadSearch | None:
    """q on the normalised forms (LeadSearch.of, shared with the inbox): the E.164 phone, the
    lower-cased e-mail and name, and q's digits inside a phone (for a partial number)."""
    if q is None:
        return None
    return LeadSearch.of(params.text("q", q, MAX_Q), deps.config.leads.default_region)


async def show_lead(deps: OpsDeps, lead_id: uuid.UUID) -> LeadDetail:
    detail = await deps.store.lead_detail(lead_id)
    if detail is None:
        raise NotFound("lead not found")
    return detail


async def set_state(
    deps: OpsDeps, lead_id: uuid.UUID, *, state: str, reason: str, actor: str
) -> StateChange:
    """An operator moves a lead forward (the lifecycle's rule: lifecycle.can_transition)."""
    if state not in OPERATOR_STATES:
        raise BadRequest(
            "state", f"expected one of {', '.join(OPERATOR_STATES)}, got {state[:40]!r}"
        )
    reason = params.text("reason", reason, MAX_REASON)
    change = await deps.store.set_state(lead_id, state=state, reason=reason, actor=actor)
    if change is None:
        raise NotFound("lead not found")
    if not change.changed:
        raise Conflict(
            f"lead is {change.from_state}: the lifecycle does not allow moving it to {state}",
            current_state=change.from_state,
        )
    return change


async def pause(deps: OpsDeps, lead_id: uuid.UUID, *, actor: str) -> PauseChange:
    """Stop the automated sequence; staff messages still go. Pausing twice is a no-op."""
    change = await deps.store.pause(lead_id, actor=actor, now=deps.clock())
    if change is None:
        raise NotFound("lead not found")
    if change.state in TERMINAL:
        raise Conflict(
            f"lead is {change.state}: it has no sequence to pause", current_state=change.state
        )
    return change


async def resume(deps: OpsDeps, lead_id: uuid.UUID, *, actor: str) -> PauseChange:
    """Restart the sequence at its next step not yet due; steps that came due while paused are
    skipped. Resuming a lead that is not paused is a no-op."""
    change = await deps.store.resume(lead_id, actor=actor, now=deps.clock())
    if change is None:
        raise NotFound("lead not found")
    if change.changed:
        deps.wake()
    return change


async def send_staff_message(
    deps: OpsDeps, lead_id: uuid.UUID, *, channel: str, body: str, author: str
) -> StaffMessage:
    """A person's reply by SMS: queued now and sent by the loop through the opt-out gate;
    quiet hours and the daily cap govern automated messages, not a person's reply."""
    if channel != "sms":
        raise BadRequest(
            "channel", f"expected 'sms' (the only channel for staff messages), got {channel[:20]!r}"
        )
    body = params.text("body", body, MAX_SMS_BODY)
    queued = await deps.store.add_staff_message(lead_id, body=body, author=author, now=deps.clock())
    if queued is None:
        raise NotFound("lead not found")
    if queued.refused == "opted_out":
        raise Conflict("the lead's phone is opted out of SMS (STOP): nothing was sent")
    if queued.refused == "no_phone":
        raise Unprocessable("the lead has no phone number to text")
    deps.wake()
    return queued
