"""Twilio's callbacks: a customer's SMS (answered with TwiML) and delivery statuses. A request
without a valid X-Twilio-Signature gets 403; a malformed one a 4xx with the reason; the
database unavailable, 503 JSON (Twilio retries). What a message does is decided by
leadd.conversations.inbound."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from leadd import metrics
from leadd.conversations import inbound
from leadd.logs import get_logger
from leadd.providers import twilio_signature as tw
from leadd.runtime import Runtime
from leadd.store import DB_ERRORS
from leadd.web import CONFIG, json_error, runtime_of, store_failed

log = get_logger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
FORM_TYPE = "application/x-www-form-urlencoded"
# Bounds on what a (signed) callback may carry: Twilio's SIDs are 34 characters, addresses
# E.164 or "whatsapp:+..."; an SMS body is at most 1,600 characters.
TWILIO_SID = re.compile(r"[A-Za-z0-9]{2,64}")
ERROR_CODE = re.compile(r"[0-9]{1,10}")
MAX_ADDRESS = 64
MAX_SMS_BODY = 10_000


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/twilio/sms", twilio_sms)
    app.router.add_post("/webhooks/twilio/status", twilio_status)


def twiml(message: str | None = None) -> web.Response:
    body = EMPTY_TWIML
    if message:
        body = f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{html.escape(message)}</Message></Response>'
    return web.Response(text=body, content_type="text/xml")


async def twilio_sms(request: web.Request) -> web.StreamResponse:
    checked = await _signed(request)
    if isinstance(checked, web.Response):
        return checked
    form, rt = checked
    phone = _field(form, "From", MAX_ADDRESS)
    sid = _field(form, "MessageSid", 64, TWILIO_SID)
    body = _field(form, "Body", MAX_SMS_BODY, required=False)
    try:
        outcome = await inbound.receive_sms(rt, phone=phone, sid=sid, body=body)
    except DB_ERRORS as exc:
        return store_failed("twilio", exc)
    return twiml(outcome.reply)


async def twilio_status(request: web.Request) -> web.StreamResponse:
    checked = await _signed(request)
    if isinstance(checked, web.Response):
        return checked
    form, rt = checked
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    status = form.get("MessageStatus") or form.get("SmsStatus") or ""
    if not TWILIO_SID.fullmatch(sid) or status not in inbound.STATUS_RANK:
        return json_error(400, "MessageSid and a known MessageStatus are required")
    error = form.get("ErrorCode") or None
    if error is not None and not ERROR_CODE.fullmatch(error):
        return json_error(400, "ErrorCode is not a valid value")
    to = form.get("To", "")
    if error == inbound.UNSUBSCRIBED_RECIPIENT and not 0 < len(to) <= MAX_ADDRESS:
        return json_error(400, "To is not a valid value")
    try:
        await inbound.sms_status(rt, sid=sid, status=status, error=error, recipient=to)
    except DB_ERRORS as exc:
        return store_failed("twilio", exc)
    return web.Response(status=204)


async def _signed(request: web.Request) -> tuple[MultiDictProxy[str], Runtime] | web.Response:
    """The form of a callback Twilio signed and the runtime to handle it, or the answer:
    403 for a bad signature, 503 while the database is not ready."""
    form = await _verified_twilio_form(request)
    if form is None:
        return json_error(403, "invalid Twilio signature")
    rt = runtime_of(request)
    if rt is None:
        return json_error(503, "database not ready; retry later")
    return form, rt


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
