"""JSON-ready views of what the use cases return, one shape for the API and `--json`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from leadd.store.models import (
    LeadDetail,
    LeadSummary,
    MessageView,
    OptOut,
    PauseChange,
    Report,
    StaffMessage,
    StateChange,
    TouchPointView,
)

Json = dict[str, Any]


def jsonable(value: Any) -> Any:
    """Datetimes as ISO 8601, UUIDs as strings, dataclasses and mappings as objects."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [jsonable(v) for v in value]
    return value


def lead_summary(lead: LeadSummary) -> Json:
    out: Json = jsonable(lead)
    out["name"] = lead.name
    out["paused"] = lead.paused_at is not None
    return out


def lead_detail(detail: LeadDetail) -> Json:
    """The lead (customer, vehicle, services, which opt-outs apply) and its timeline."""
    lead = {
        "id": str(detail.id),
        "state": detail.state,
        "location_id": detail.location_id,
        "source": detail.source,
        "order_id": detail.shopmonkey_order_id,
        "order_number": detail.order_number,
        "customer": {
            "first_name": detail.first_name,
            "last_name": detail.last_name,
            "phone": detail.phone,
            "email": detail.email,
        },
        "vehicle": jsonable(detail.vehicle),
        "services": jsonable(detail.services),
        "enrichment_status": detail.enrichment_status,
        "attached_to": jsonable(detail.attached_to),
        "paused": detail.paused_at is not None,
        "paused_at": jsonable(detail.paused_at),
        "last_error": detail.last_error,
        "opted_out": {
            channel: any(o.channel == channel for o in detail.opt_outs)
            for channel in ("sms", "email")
        },
        "created_at": detail.created_at.isoformat(),
        "updated_at": detail.updated_at.isoformat(),
    }
    return {"lead": lead, "timeline": timeline(detail)}


def timeline(detail: LeadDetail) -> list[Json]:
    """Events, touch points, messages and opt-outs in one list, oldest first."""
    entries: list[tuple[dt.datetime, Json]] = []
    for e in detail.events:
        entries.append((e.at, {
            "type": "event", "at": e.at.isoformat(), "from_state": e.from_state,
            "to_state": e.to_state, "cause": e.cause, "actor": e.actor,
            "detail": jsonable(e.detail),
        }))  # fmt: skip
    for t in detail.touch_points:
        entries.append((_touch_point_time(t), _touch_point(t)))
    for m in detail.messages:
        entries.append((m.created_at, _message(m)))
    for o in detail.opt_outs:
        entries.append((o.created_at, {"type": "opt_out", **opt_out(o)}))
    entries.sort(key=lambda entry: entry[0])  # stable: ties keep the order above
    return [entry for _, entry in entries]


def _touch_point_time(t: TouchPointView) -> dt.datetime:
    if t.sent_at is not None:
        return t.sent_at
    return t.due_at if t.state in ("scheduled", "sending") else t.updated_at


def _touch_point(t: TouchPointView) -> Json:
    return {
        "type": "touch_point",
        "at": _touch_point_time(t).isoformat(),
        "id": t.id,
        "kind": t.kind,
        "step": t.step_name,
        "channel": t.channel,
        "state": t.state,
        "due_at": t.due_at.isoformat(),
        "sent_at": jsonable(t.sent_at),
        "attempts": t.attempts,
        "reason": t.last_error,  # why it was skipped, cancelled or failed
        "dry_run": t.dry_run,
        "author": t.author,
        "delivery_status": t.delivery_status,
    }


def _message(m: MessageView) -> Json:
    return {
        "type": "message",
        "at": m.created_at.isoformat(),
        "direction": m.direction,
        "channel": m.channel,
        "text": m.body,
        "author": message_author(m),
        "dry_run": m.dry_run,
        "delivery_status": m.delivery_status,
    }


def message_author(m: MessageView) -> str:
    if m.author:
        return m.author
    return "customer" if m.direction == "inbound" else "leadd"


def opt_out(o: OptOut) -> Json:
    return {
        "channel": o.channel,
        "address": o.address,
        "reason": o.reason,
        "at": o.created_at.isoformat(),
    }


def state_change(c: StateChange) -> Json:
    return {"lead_id": str(c.lead_id), "from_state": c.from_state, "state": c.to_state}


def pause_change(c: PauseChange) -> Json:
    out: Json = {
        "lead_id": str(c.lead_id),
        "state": c.state,
        "paused": c.paused_at is not None,
        "paused_at": jsonable(c.paused_at),
        "changed": c.changed,
    }
    if not out["paused"]:
        out["skipped"] = c.skipped
    return out


def staff_message(m: StaffMessage) -> Json:
    return {
        "lead_id": str(m.lead_id),
        "touch_point_id": m.touch_point_id,
        "status": "queued",
        "due_at": jsonable(m.due_at),
    }


def report(r: Report) -> Json:
    out: Json = jsonable(r)
    return out
