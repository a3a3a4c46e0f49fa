"""Inbound provider traffic: customer SMS (replies, STOP/START/HELP), Twilio delivery status,
SendGrid events, and the e-mail unsubscribe link. Unsigned or badly signed requests: 403."""

from __future__ import annotations

import html
import time
from typing import Any

from aiohttp import web

from leadd import compliance, metrics
from leadd.conversations import replies
from leadd.db import Q
from leadd.logs import get_logger
from leadd.providers import sendgrid as sg
from leadd.providers import twilio as tw
from leadd.store.conversations import ConversationStore
from leadd.web import DAEMON, json_error

log = get_logger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
# Delivery status rank: callbacks arrive out of order; a status never moves backwards.
STATUS_RANK = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "read": 5,
    "canceled": 4,
}
# Events after which we must not e-mail the address again.
EMAIL_STOP_EVENTS = frozenset({"bounce", "spamreport", "unsubscribe", "group_unsubscribe"})
SENDGRID_TOLERANCE = 600  # seconds; SendGrid documents none, so bound replays ourselves


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/twilio/sms", twilio_sms)
    app.router.add_post("/webhooks/twilio/status", twilio_status)
    app.router.add_post("/webhooks/sendgrid/events", sendgrid_events)
    app.router.add_get("/unsubscribe/{token}", unsubscribe_page)
    app.router.add_post("/unsubscribe/{token}", unsubscribe)


def twiml(message: str | None = None) -> web.Response:
    body = EMPTY_TWIML
    if message:
        body = f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{html.escape(message)}</Message></Response>'
    return web.Response(text=body, content_type="text/xml")


async def _verified_twilio_form(request: web.Request) -> Any:
    """The form params if X-Twilio-Signature checks out, else None."""
    daemon = request.app[DAEMON]
    token = daemon.config.twilio.auth_token
    form = await request.post()
    # Behind a TLS proxy request.url is wrong: sign what Twilio called, our public URL.
    url = daemon.config.http.public_url + request.raw_path
    signature = request.headers.get(tw.SIGNATURE_HEADER, "")
    if not token or not signature or not tw.validate_signature(token, url, form, signature):
        metrics.WEBHOOKS_REJECTED.labels("twilio", "signature").inc()
        log.warning(
            "webhook.rejected",
            provider="twilio",
            path=request.path,
            reason="bad or missing signature" if token else "twilio auth_token not configured",
        )
        return None
    return form


async def twilio_sms(request: web.Request) -> web.StreamResponse:
    form = await _verified_twilio_form(request)
    if form is None:
        return json_error(403, "invalid Twilio signature")
    daemon = request.app[DAEMON]
    db = daemon.db
    if db is None:
        return json_error(503, "database not ready; retry later")
    phone, body, sid = form.get("From", ""), form.get("Body", ""), form.get("MessageSid")
    keyword = compliance.classify_keyword(str(body))
    tenant = db.tenant_id
    async with db.transaction() as conn:
        lead = await conn.fetchrow(Q["latest_lead_for_phone"], tenant, phone)
        lead_id = lead["id"] if lead else None
        if lead_id is not None:
            # Lock the lead before the chat message's foreign key takes KEY SHARE on it: two
            # messages of one phone arriving together would otherwise deadlock in advance().
            await conn.fetchrow(Q["lock_lead"], tenant, lead_id)
        stored = await conn.fetchval(
            Q["insert_chat_message"], tenant, lead_id, "inbound", "sms", phone, str(body), sid
        )
        if stored is None and sid:
            return twiml()  # Twilio retried a message we already have
        if keyword == "opt_out":
            await conn.execute(Q["opt_out"], tenant, "sms", phone, "keyword")
            await conn.execute(Q["cancel_for_address"], tenant, "sms", phone, "opted out (STOP)")
        if keyword == "opt_in":
            await conn.execute(Q["opt_in"], tenant, "sms", phone)
        # "Yes" is an opt-in keyword and also the usual answer to "want us to book it?": it is
        # a reply like any other, so the lead is engaged and automated follow-ups stop.
        if keyword in (None, "opt_in") and lead_id is not None:
            await replies.customer_replied(  # the same step as a message on the chat page
                ConversationStore(db.pool, tenant),
                lead_id,
                cause="sms.reply",
                detail={"message_sid": sid},
                conn=conn,
            )
    log.info("sms.inbound", phone=phone, keyword=keyword, lead_id=str(lead_id) if lead_id else None)
    if keyword == "help":
        return twiml(_help_text(daemon))
    return twiml()


def _help_text(daemon: Any) -> str:
    cfg = daemon.config
    if cfg.compliance.help_text:
        return str(cfg.compliance.help_text)
    loc = cfg.locations[0]
    contact = f" or call {loc.phone}" if loc.phone else ""
    return (
        f"{cfg.tenant.name}: service updates about your estimate request. "
        f"Up to 3 msgs/day. Msg&data rates may apply. Reply STOP to opt out, HELP for help{contact}."
    )


async def twilio_status(request: web.Request) -> web.StreamResponse:
    form = await _verified_twilio_form(request)
    if form is None:
        return json_error(403, "invalid Twilio signature")
    db = request.app[DAEMON].db
    if db is None:
        return json_error(503, "database not ready; retry later")
    sid = form.get("MessageSid") or form.get("SmsSid")
    status = str(form.get("MessageStatus") or form.get("SmsStatus") or "")
    if not sid or status not in STATUS_RANK:
        return json_error(400, "MessageSid and a known MessageStatus are required")
    error = form.get("ErrorCode")
    await db.execute("upsert_message_status", sid, status, STATUS_RANK[status], error)
    if error == "21610":
        async with db.transaction() as conn:
            await conn.execute(
                Q["opt_out"], db.tenant_id, "sms", form.get("To", ""), "twilio_21610"
            )
            await conn.execute(
                Q["cancel_for_address"],
                db.tenant_id,
                "sms",
                form.get("To", ""),
                "opted out (21610)",
            )
    return web.Response(status=204)


async def sendgrid_events(request: web.Request) -> web.StreamResponse:
    daemon = request.app[DAEMON]
    key = daemon.config.sendgrid.event_webhook_public_key
    raw = await request.read()
    signature = request.headers.get(sg.SIGNATURE_HEADER, "")
    timestamp = request.headers.get(sg.TIMESTAMP_HEADER, "")
    fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= SENDGRID_TOLERANCE
    if not key or not fresh or not sg.verify_event_signature(key, raw, signature, timestamp):
        metrics.WEBHOOKS_REJECTED.labels("sendgrid", "signature").inc()
        log.warning(
            "webhook.rejected", provider="sendgrid", reason="bad, stale or missing signature"
        )
        return json_error(403, "invalid SendGrid event signature")
    from leadd.webhooks import decode_json

    try:
        events = decode_json(raw)
    except ValueError as exc:
        return json_error(400, str(exc))
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        return json_error(400, "body must be a JSON array of event objects")
    db = daemon.db
    if db is None:
        return json_error(503, "database not ready; retry later")
    new = 0
    async with db.transaction() as conn:
        for e in events:
            event_id, kind, email = e.get("sg_event_id"), e.get("event"), e.get("email")
            if not isinstance(event_id, str) or not isinstance(kind, str):
                continue
            tp_id = e.get("touch_point_id")
            inserted = await conn.fetchval(
                Q["insert_email_event"],
                db.tenant_id,
                event_id,
                kind,
                email.lower() if isinstance(email, str) else None,
                _uuid_or_none(e.get("lead_id")),
                int(tp_id) if isinstance(tp_id, str) and tp_id.isdigit() else None,
                e.get("sg_message_id"),
                e,
            )
            if inserted is None:
                continue  # duplicate delivery of an event we have
            new += 1
            if kind in EMAIL_STOP_EVENTS and isinstance(email, str):
                address = email.strip().lower()
                await conn.execute(Q["opt_out"], db.tenant_id, "email", address, kind)
                await conn.execute(
                    Q["cancel_for_address"], db.tenant_id, "email", address, f"e-mail {kind}"
                )
    log.info("sendgrid.events", received=len(events), new=new)
    return web.json_response({"success": True, "received": len(events), "new": new})


def _uuid_or_none(value: Any) -> Any:
    import uuid

    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


async def unsubscribe_page(request: web.Request) -> web.Response:
    """GET shows a confirm button (link scanners must not unsubscribe people by prefetching)."""
    token = html.escape(request.match_info["token"])
    page = (
        "<!doctype html><title>Unsubscribe</title><form method=post>"
        f"<p>Stop e-mails about your estimate request?</p><button formaction='/unsubscribe/{token}'>Unsubscribe</button></form>"
    )
    return web.Response(text=page, content_type="text/html")


async def unsubscribe(request: web.Request) -> web.Response:
    """POST (also RFC 8058 one-click): opt the lead's e-mail out of all e-mail."""
    db = request.app[DAEMON].db
    if db is None:
        return json_error(503, "database not ready; retry later")
    lead = await db.fetchrow("lead_by_chat_token", request.match_info["token"])
    if lead is None:
        return json_error(404, "unknown unsubscribe link")
    if lead["email"]:
        async with db.transaction() as conn:
            await conn.execute(
                Q["opt_out"], db.tenant_id, "email", lead["email"], "unsubscribe_link"
            )
            await conn.execute(
                Q["cancel_for_address"], db.tenant_id, "email", lead["email"], "unsubscribed"
            )
    log.info("email.unsubscribed", lead_id=str(lead["id"]))
    return web.Response(
        text="<!doctype html><p>You are unsubscribed. You will get no more e-mails from us.</p>",
        content_type="text/html",
    )
