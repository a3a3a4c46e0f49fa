"""Inbound provider traffic: customer SMS (replies, STOP/START/HELP), Twilio delivery status,
SendGrid events, and the e-mail unsubscribe link. Unsigned or badly signed requests: 403."""

from __future__ import annotations

import html
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from leadd import consent, metrics
from leadd.conversations import replies
from leadd.db import Q
from leadd.intake.events import decode_json
from leadd.logs import get_logger
from leadd.providers import sendgrid as sg
from leadd.providers import twilio_signature as tw
from leadd.store import DB_ERRORS
from leadd.store.core import Tx
from leadd.web import CONFIG, json_error, runtime_of

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
# Unix seconds in ASCII digits; the bound keeps int() cheap (str.isdigit() also accepts "²").
TIMESTAMP = re.compile(r"[0-9]{1,12}")
FORM_TYPE = "application/x-www-form-urlencoded"
# Bounds on what a (signed) callback may carry: Twilio's SIDs are 34 characters, addresses
# E.164 or "whatsapp:+..."; an SMS body is at most 1,600 characters.
TWILIO_SID = re.compile(r"[A-Za-z0-9]{2,64}")
ERROR_CODE = re.compile(r"[0-9]{1,10}")
MAX_ADDRESS = 64
MAX_SMS_BODY = 10_000
MAX_EVENT_ID = 256  # SendGrid's ids are ~22-60 characters; the primary key must fit a btree row
MAX_EMAIL = 320  # RFC 5321: 64 + 1 + 255
BIGINT_MAX = 2**63 - 1
# The database refuses this one value (NUL, a lone surrogate, a number out of range), not us.
_BAD_VALUE = (asyncpg.DataError, asyncpg.ProgramLimitExceededError)
UNSUBSCRIBE_TOKEN = re.compile(r"[0-9a-f]{64}")  # see sql/0004_unsubscribe_tokens.sql


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


async def _twilio_form(request: web.Request) -> MultiDictProxy[str]:
    """The UTF-8 urlencoded form Twilio posts (aiohttp's post() would 500 on a bogus charset or
    a multipart body without a boundary); anything else is a 4xx with the reason."""
    if request.content_type != FORM_TYPE:
        raise web.HTTPUnsupportedMediaType(text=f"expected {FORM_TYPE}")
    if (request.charset or "utf-8").lower() not in ("utf-8", "utf8"):
        raise web.HTTPUnsupportedMediaType(text="the form's charset must be UTF-8")
    raw = await request.read()
    try:
        pairs = parse_qsl(raw.rstrip().decode(), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="the form is not valid UTF-8") from None
    if any("\x00" in key or "\x00" in value for key, value in pairs):
        raise web.HTTPBadRequest(text="form values must not contain NUL characters")
    return MultiDictProxy(MultiDict(pairs))


def _field(
    form: MultiDictProxy[str],
    name: str,
    limit: int,
    pattern: re.Pattern[str] | None = None,
    *,
    required: bool = True,
) -> str:
    """A field of a signed callback, checked before it reaches the database."""
    value = form.get(name, "")
    if not value:
        if required:
            raise web.HTTPBadRequest(text=f"{name} is required")
        return ""
    if len(value) > limit or (pattern is not None and not pattern.fullmatch(value)):
        raise web.HTTPBadRequest(text=f"{name} is not a valid value")
    return value


def _store_failed(provider: str, exc: BaseException) -> web.Response:
    """A database error: 503, so the provider retries (as the Shopmonkey webhook answers)."""
    log.error("webhook.store_failed", provider=provider, error=f"{type(exc).__name__}: {exc}")
    return json_error(503, "could not store the event; retry later")


async def _verified_twilio_form(request: web.Request) -> MultiDictProxy[str] | None:
    """The form params if X-Twilio-Signature checks out, else None."""
    config = request.app[CONFIG]
    token = config.twilio.auth_token
    form = await _twilio_form(request)
    # Behind a TLS proxy request.url is wrong: sign what Twilio called, our public URL.
    url = config.http.public_url + request.raw_path
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
    rt = runtime_of(request)
    if rt is None:
        return json_error(503, "database not ready; retry later")
    db = rt.store
    phone = _field(form, "From", MAX_ADDRESS)
    sid = _field(form, "MessageSid", 64, TWILIO_SID)
    body = _field(form, "Body", MAX_SMS_BODY, required=False)
    keyword = consent.classify_keyword(body)
    tenant = db.tenant_id
    try:
        async with db.transaction() as conn:
            lead = await conn.fetchrow(Q["latest_lead_for_phone"], tenant, phone)
            lead_id = lead["id"] if lead else None
            if lead_id is not None:
                # Lock the lead before the chat message's foreign key takes KEY SHARE on it: two
                # messages of one phone arriving together would otherwise deadlock in advance().
                await conn.fetchrow(Q["lock_lead"], tenant, lead_id)
            stored = await conn.fetchval(
                Q["insert_chat_message"], tenant, lead_id, "inbound", "sms", phone, body, sid
            )
            if stored is None:
                return twiml()  # Twilio retried a message we already have
            if keyword == "opt_out":
                await conn.execute(Q["opt_out"], tenant, "sms", phone, "keyword")
                await conn.execute(
                    Q["cancel_for_address"], tenant, "sms", phone, "opted out (STOP)"
                )
            if keyword == "opt_in":
                await conn.execute(Q["opt_in"], tenant, "sms", phone)
            # "Yes" is an opt-in keyword and also the usual answer to "want us to book it?": it
            # is a reply like any other, so the lead is engaged and automated follow-ups stop.
            if keyword in (None, "opt_in") and lead_id is not None:
                # The same step as a message on the chat page (leadd.conversations.replies):
                # engaged, and the automated follow-ups stop (a queued staff message still goes).
                await replies.customer_replied(
                    db, lead_id, cause="sms.reply", detail={"message_sid": sid},
                    tx=Tx(conn, tenant),
                )  # fmt: skip
    except DB_ERRORS as exc:
        return _store_failed("twilio", exc)
    log.info("sms.inbound", phone=phone, keyword=keyword, lead_id=str(lead_id) if lead_id else None)
    if keyword == "help":
        return twiml(_help_text(rt))
    return twiml()


def _help_text(rt: Any) -> str:
    cfg = rt.config
    if cfg.compliance.help_text:
        return str(cfg.compliance.help_text)
    loc = cfg.locations[0]
    contact = f" or call {loc.phone}" if loc.phone else ""
    return (
        f"{cfg.tenant.name}: service updates about your estimate request. "
        f"Up to {cfg.compliance.max_sms_per_day} msgs/day. Msg&data rates may apply. "
        f"Reply STOP to opt out, HELP for help{contact}."
    )


async def twilio_status(request: web.Request) -> web.StreamResponse:
    form = await _verified_twilio_form(request)
    if form is None:
        return json_error(403, "invalid Twilio signature")
    rt = runtime_of(request)
    if rt is None:
        return json_error(503, "database not ready; retry later")
    db = rt.store
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    status = form.get("MessageStatus") or form.get("SmsStatus") or ""
    if not TWILIO_SID.fullmatch(sid) or status not in STATUS_RANK:
        return json_error(400, "MessageSid and a known MessageStatus are required")
    error = form.get("ErrorCode") or None
    if error is not None and not ERROR_CODE.fullmatch(error):
        return json_error(400, "ErrorCode is not a valid value")
    to = form.get("To", "")
    if error == "21610" and not 0 < len(to) <= MAX_ADDRESS:
        return json_error(400, "To is not a valid value")
    try:
        metrics.count_sms_status(
            status,
            await db.execute("upsert_message_status", sid, status, STATUS_RANK[status], error),
        )
        if error == "21610":
            async with db.transaction() as conn:
                await conn.execute(Q["opt_out"], db.tenant_id, "sms", to, "twilio_21610")
                await conn.execute(
                    Q["cancel_for_address"], db.tenant_id, "sms", to, "opted out (21610)"
                )
    except DB_ERRORS as exc:
        return _store_failed("twilio", exc)
    return web.Response(status=204)


@dataclass(frozen=True)
class _EmailEvent:
    event_id: str
    kind: str
    email: str | None
    lead_id: uuid.UUID | None
    touch_point_id: int | None
    message_id: str | None
    payload: dict[str, Any]


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
    db = rt.store
    # A batch is many independent records: a bad one is skipped and counted, not the batch.
    parsed = [_email_event(e) for e in events]
    valid = [e for e in parsed if e is not None]
    skipped = len(parsed) - len(valid)
    stored: list[str] = []  # the kinds of the events new to us
    try:
        async with db.transaction() as conn:
            for e in valid:
                try:
                    async with conn.transaction():  # a savepoint: only this event is undone
                        if await _store_email_event(conn, db.tenant_id, e):
                            stored.append(e.kind)
                except _BAD_VALUE:
                    skipped += 1
    except DB_ERRORS as exc:
        return _store_failed("sendgrid", exc)
    for kind in stored:  # counted once committed
        metrics.count_email_event(kind)
    new = len(stored)
    if skipped:
        metrics.WEBHOOKS_REJECTED.labels("sendgrid", "invalid_event").inc(skipped)
        log.warning("sendgrid.events_skipped", skipped=skipped, received=len(events))
    log.info("sendgrid.events", received=len(events), new=new)
    return web.json_response(
        {"success": True, "received": len(events), "new": new, "skipped": skipped}
    )


def _email_event(e: Any) -> _EmailEvent | None:
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
    return _EmailEvent(
        event_id,
        kind,
        email.lower() if email else None,
        lead,
        tp_id or None,
        message_id,
        e,
    )


async def _store_email_event(conn: Any, tenant: uuid.UUID, e: _EmailEvent) -> bool:
    """True when the event is new, False for a redelivery; a stop event opts the address out."""
    inserted = await conn.fetchval(
        Q["insert_email_event"],
        tenant,
        e.event_id,
        e.kind,
        e.email,
        e.lead_id,
        e.touch_point_id,
        e.message_id,
        e.payload,
    )
    if inserted is None:
        return False  # duplicate delivery of an event we have
    if e.kind in EMAIL_STOP_EVENTS and e.email:
        address = e.email.strip()
        await conn.execute(Q["opt_out"], tenant, "email", address, e.kind)
        await conn.execute(Q["cancel_for_address"], tenant, "email", address, f"e-mail {e.kind}")
    return True


async def unsubscribe_page(request: web.Request) -> web.Response:
    """GET shows a confirm button (link scanners must not unsubscribe people by prefetching)."""
    token = request.match_info["token"]
    if not UNSUBSCRIBE_TOKEN.fullmatch(token):
        return json_error(404, "unknown unsubscribe link")
    page = (
        "<!doctype html><title>Unsubscribe</title><form method=post>"
        f"<p>Stop e-mails about your estimate request?</p><button formaction='/unsubscribe/{token}'>Unsubscribe</button></form>"
    )
    return web.Response(text=page, content_type="text/html")


async def unsubscribe(request: web.Request) -> web.Response:
    """POST (also RFC 8058 one-click): opt the lead's e-mail out of all e-mail."""
    rt = runtime_of(request)
    if rt is None:
        return json_error(503, "database not ready; retry later")
    db = rt.store
    token = request.match_info["token"]
    if not UNSUBSCRIBE_TOKEN.fullmatch(token):
        return json_error(404, "unknown unsubscribe link")
    try:
        lead = await db.fetchrow("lead_by_unsubscribe_token", token)
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
    except DB_ERRORS as exc:
        return _store_failed("unsubscribe", exc)
    log.info("email.unsubscribed", lead_id=str(lead["id"]))
    return web.Response(
        text="<!doctype html><p>You are unsubscribed. You will get no more e-mails from us.</p>",
        content_type="text/html",
    )
