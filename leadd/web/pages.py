"""What the HTML pages share: Jinja2 templates (autoescaped), static files with cache headers,
security headers (a strict Content-Security-Policy), error pages.

`setup(app, ready)` adds the customer chat page (chat.py), the staff inbox (inbox.py) and their
live updates (live.py) to the app. Their handlers reach what they need as every handler does,
through `leadd.web.runtime_of(request)` (None until the database is ready: 503).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web

from leadd.operations import OpsDeps
from leadd.runtime import Runtime
from leadd.templates import format_money
from leadd.web import RUNTIME

READY: web.AppKey[asyncio.Event | None] = web.AppKey("pages_runtime_ready")
STATIC: web.AppKey[dict[str, StaticFile]] = web.AppKey("static_files")
PAGE_PREFIXES = ("/c/", "/inbox", "/static/")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}
MAX_FORM_FIELDS = 20


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    version: str  # content hash: a URL with it never changes meaning, so it caches forever


def setup(app: web.Application, ready: asyncio.Event | None) -> None:
    """`ready`: set once the app's runtime provider returns the Runtime; the live listener
    waits for it (None: no live listener, the pages still work by reloading)."""
    from leadd.web import chat, inbox, live

    app[READY] = ready
    app[STATIC] = _load_static()
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("leadd.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = lambda name: f"/static/{name}?v={app[STATIC][name].version}"
    env.filters["money"] = format_money
    env.filters["when"] = when
    env.filters["ago"] = ago
    app.router.add_get("/static/{name}", static_file)
    app.on_response_prepare.append(_security_headers)
    chat.setup_routes(app)
    inbox.setup_routes(app)
    live.setup(app)


def _load_static() -> dict[str, StaticFile]:
    out = {}
    for entry in resources.files("leadd.web").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if suffix in STATIC_TYPES:
            body = entry.read_bytes()
            version = hashlib.sha256(body).hexdigest()[:12]
            out[entry.name] = StaticFile(body, STATIC_TYPES[suffix], version)
    return out


async def static_file(request: web.Request) -> web.Response:
    f = request.app[STATIC].get(request.match_info["name"])
    if f is None:
        raise web.HTTPNotFound(text="no such file")
    etag = f'"{f.version}"'
    forever = request.query.get("v") == f.version
    headers = {
        "ETag": etag,
        "Cache-Control": "public, max-age=31536000, immutable"
        if forever
        else "public, max-age=300",
    }
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=f.body, content_type=f.content_type, charset="utf-8", headers=headers)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if not request.path.startswith(PAGE_PREFIXES):
        return
    h = response.headers
    h["Content-Security-Policy"] = CSP
    h["X-Content-Type-Options"] = "nosniff"
    h["X-Frame-Options"] = "DENY"
    # The chat link's token is in the URL: never send it anywhere in a Referer.
    h["Referrer-Policy"] = "no-referrer"
    h.setdefault("Cache-Control", "no-store")  # pages carry personal data


async def runtime_when_ready(app: web.Application) -> Runtime | None:
    """For the app's own tasks (the live listener): the Runtime once the database is ready;
    None when nobody will say so (`setup` without an event)."""
    ready = app[READY]
    if ready is None:
        return None
    await ready.wait()
    return app[RUNTIME]()


def ops_deps(rt: Runtime) -> OpsDeps:
    """The ops use cases' dependencies (pause, resume, state changes), from the Runtime."""
    return OpsDeps(config=rt.config, store=rt.store, clock=rt.clock, wake=rt.wake)


def render(
    request: web.Request, template: str, context: Mapping[str, Any], status: int = 200
) -> web.Response:
    response = aiohttp_jinja2.render_template(template, request, dict(context), status=status)
    return response


def error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    return render(request, "error.html", {"title": title, "message": message}, status)


def not_ready(request: web.Request) -> web.Response:
    return error_page(
        request, 503, "Not ready yet", "We are starting up. Please try again in a moment."
    )


async def form(request: web.Request) -> dict[str, str]:
    """The posted form (application/x-www-form-urlencoded, as every form here is sent), decoded
    strictly: a body that is not valid UTF-8 is refused (400), not stored with replacement
    characters; another content type is 415."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise web.HTTPUnsupportedMediaType(
            text="send the form as application/x-www-form-urlencoded"
        )
    raw = await request.read()
    try:
        pairs = parse_qsl(
            raw.decode("ascii"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise web.HTTPBadRequest(text="the form could not be read as UTF-8 text") from None
    return dict(pairs)


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def when(value: dt.datetime, tz: str = "UTC") -> str:
    """'Mon Mar 3, 9:05 AM' on a location's calendar."""
    local = value.astimezone(ZoneInfo(tz))
    hour = local.hour % 12 or 12
    return (
        f"{local:%a %b} {local.day}, {hour}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}"
    )


def ago(value: dt.datetime | None, now: dt.datetime) -> str:
    """'just now', '5 min ago', '3 h ago', '2 d ago'."""
    if value is None:
        return "never"
    seconds = max(0.0, (now - value).total_seconds())
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"
