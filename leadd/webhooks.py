"""Provider webhook endpoints (Shopmonkey orders, Twilio SMS/status, SendGrid events)."""

from __future__ import annotations

from aiohttp import web


def setup_routes(app: web.Application) -> None:
    pass
