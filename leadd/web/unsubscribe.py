"""The e-mail unsubscribe link (its own token, never the chat link's). GET shows a confirm
button, so link scanners prefetching it unsubscribe no one; POST (also RFC 8058 one-click)
opts the lead's e-mail out of all e-mail."""

from __future__ import annotations

import re

from aiohttp import web

from leadd.conversations import inbound
from leadd.store import DB_ERRORS
from leadd.web import json_error, runtime_of, store_failed

UNSUBSCRIBE_TOKEN = re.compile(r"[0-9a-f]{64}")  # see sql/0004_unsubscribe_tokens.sql


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/unsubscribe/{token}", unsubscribe_page)
    app.router.add_post("/unsubscribe/{token}", unsubscribe)


async def unsubscribe_page(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    if not UNSUBSCRIBE_TOKEN.fullmatch(token):
        return json_error(404, "unknown unsubscribe link")
    page = (
        "<!doctype html><title>Unsubscribe</title><form method=post>"
        f"<p>Stop e-mails about your estimate request?</p><button formaction='/unsubscribe/{token}'>Unsubscribe</button></form>"
    )
    return web.Response(text=page, content_type="text/html")


async def unsubscribe(request: web.Request) -> web.Response:
    rt = runtime_of(request)
    if rt is None:
        return json_error(503, "database not ready; retry later")
    token = request.match_info["token"]
    if not UNSUBSCRIBE_TOKEN.fullmatch(token):
        return json_error(404, "unknown unsubscribe link")
    try:
        known = await inbound.unsubscribe(rt, token)
    except DB_ERRORS as exc:
        return store_failed("unsubscribe", exc)
    if not known:
        return json_error(404, "unknown unsubscribe link")
    return web.Response(
        text="<!doctype html><p>You are unsubscribed. You will get no more e-mails from us.</p>",
        content_type="text/html",
    )
