"""SendGrid's Event Webhook: signed (ECDSA) batches of delivery events. A bad, stale or missing
signature gets 403; a body that is not a JSON array 400; a malformed event in a batch is
skipped and counted, not the batch; the database unavailable, 503 JSON (SendGrid retries)."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from aiohttp import web

from leadd import metrics
from leadd.conversations import inbound
from leadd.intake.events import decode_json
from leadd.logs import get_logger
from leadd.providers import sendgrid as sg
from leadd.store import DB_ERRORS
from leadd.store.inbound import EmailEvent
from leadd.web import CONFIG, json_error, runtime_of, store_failed

log = get_logger(__name__)

SENDGRID_TOLERANCE = 600  # seconds; SendGrid documents none, so bound replays ourselves
# Unix seconds in ASCII digits; the bound keeps int() cheap (str.isdigit() also accepts "²").
TIMESTAMP = re.compile(r"[0-9]{1,12}")
MAX_EVENT_ID = 256  # SendGrid's ids are ~22-60 characters; the primary key must fit a btree row
MAX_EMAIL = 320  # RFC 5321: 64 + 1 + 255
BIGINT_MAX = 2**63 - 1


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/sendgrid/events", sendgrid_events)


async def sendgrid_events(request: web.Request) -> web.StreamResponse:
    key = request.app[CONFIG].sendgrid.event_webhook_public_key
    raw = await request.read()
    signature = request.headers.get(sg.SIGNATURE_HEADER, "")
    timestamp = request.headers.get(sg.TIMESTAMP_HEADER, "")
    fresh = (
        TIMESTAMP.fullmatch(timestamp) is not None
        and abs(time.time() - int(timestamp)) <= SENDGRID_TOLERANCE
    )
    if not key or not fresh or not sg.verify_event_signature(key, raw, signature, timestamp):
        metrics.WEBHOOKS_REJECTED.labels("sendgrid", "signature").inc()
        log.warning(
            "webhook.rejected", provider="sendgrid", reason="bad, stale or missing signature"
        )
        return json_error(403, "invalid SendGrid event signature")
    try:
        events = decode_json(raw)
    except ValueError as exc:
        return json_error(400, str(exc))
    if not isinstance(events, list):
        return json_error(400, "body must be a JSON array of event objects")
    rt = runtime_of(request)
    if rt is None:
        return json_error(503, "database not ready; retry later")
    # A batch is many independent records: a bad one is skipped and counted, not the batch.
    parsed = [_email_event(e) for e in events]
    valid = [e for e in parsed if e is not None]
    try:
        stored = await inbound.email_events(rt, valid)
    except DB_ERRORS as exc:
        return store_failed("sendgrid", exc)
    skipped = len(parsed) - len(valid) + stored.refused
    new = len(stored.new)
    if skipped:
        metrics.WEBHOOKS_REJECTED.labels("sendgrid", "invalid_event").inc(skipped)
        log.warning("sendgrid.events_skipped", skipped=skipped, received=len(events))
    log.info("sendgrid.events", received=len(events), new=new)
    return web.json_response(
        {"success": True, "received": len(events), "new": new, "skipped": skipped}
    )


def _email_event(e: Any) -> EmailEvent | None:
    """One SendGrid event in the types and sizes we store, or None when it is malformed."""
    if not isinstance(e, dict):
        return None
    event_id, kind, email = e.get("sg_event_id"), e.get("event"), e.get("email")
    message_id = e.get("sg_message_id")
    if not (isinstance(event_id, str) and 0 < len(event_id) <= MAX_EVENT_ID):
        return None
    if not (isinstance(kind, str) and 0 < len(kind) <= 64):
        return None
    if email is not None and not (isinstance(email, str) and len(email) <= MAX_EMAIL):
        return None
    if message_id is not None and not (isinstance(message_id, str) and len(message_id) <= 256):
        return None
    # Our own custom_args (strings): present but malformed means the event is not ours.
    lead_id, tp_id = e.get("lead_id"), e.get("touch_point_id")
    try:
        lead = uuid.UUID(lead_id) if lead_id else None
    except (TypeError, ValueError, AttributeError):
        return None
    if isinstance(tp_id, str) and re.fullmatch(r"[0-9]{1,19}", tp_id):
        tp_id = int(tp_id)
    if tp_id is not None and tp_id != "" and not (type(tp_id) is int and 0 < tp_id <= BIGINT_MAX):
        return None
    return EmailEvent(
        event_id,
        kind,
        email.lower() if email else None,
        lead,
        tp_id or None,
        message_id,
        e,
    )
