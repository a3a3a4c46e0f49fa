"""Provider webhook endpoints: verify first, then store idempotently, then answer.

Nothing here calls a provider: enrichment and messaging happen off the request path.
"""

from __future__ import annotations

import json
import time
from typing import Any

import asyncpg
from aiohttp import web

from leadd import leads, metrics
from leadd.logs import get_logger
from leadd.providers import shopmonkey
from leadd.web import DAEMON, json_error

log = get_logger(__name__)

# What a lost or refused database connection raises. InternalClientError: asyncpg's protocol
# when the server cut a pooled connection that the pool had not noticed yet.
_DB_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    TimeoutError,
)


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/shopmonkey/order", shopmonkey_order)
    from leadd import inbound

    inbound.setup_routes(app)


def decode_json(raw: bytes) -> Any:
    """Strict UTF-8 JSON; raises ValueError with a reason fit for a 400."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("body is not valid UTF-8") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {leads.MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON, and PostgreSQL's jsonb refuses them.
    raise ValueError(f"body is not valid JSON: {name} is not a JSON number")


async def shopmonkey_order(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    cfg = daemon.config
    raw = await request.read()
    try:
        shopmonkey.verify_webhook(
            request.headers, raw, cfg.shopmonkey.webhook_secrets, now=time.time()
        )
    except shopmonkey.WebhookSignatureError as exc:
        metrics.WEBHOOKS_REJECTED.labels("shopmonkey", "signature").inc()
        log.warning("webhook.rejected", provider="shopmonkey", reason=exc.reason)
        return json_error(401, f"signature rejected: {exc.reason}")
    delivery = request.headers.get("webhook-id") or request.headers.get("X-Request-Id")
    try:
        event = leads.parse_event(decode_json(raw), "webhook", delivery)
    except (ValueError, leads.BadEvent) as exc:
        metrics.WEBHOOKS_REJECTED.labels("shopmonkey", "invalid").inc()
        log.warning("webhook.invalid", provider="shopmonkey", reason=str(exc), delivery_id=delivery)
        return json_error(400, str(exc))
    if isinstance(event, str):
        metrics.LEADS_INGESTED.labels("webhook", "ignored").inc()
        return web.json_response({"success": True, "ignored": event})
    if cfg.demo_mode:
        reason = leads.demo_filter_reason(event.order)
        if reason:
            metrics.LEADS_INGESTED.labels("webhook", "ignored").inc()
            log.info("webhook.ignored", reason=reason, order_id=event.order_id)
            return web.json_response({"success": True, "ignored": reason})
    db = daemon.db
    if db is None:
        return json_error(503, "database not ready; retry later")
    try:
        result = await leads.ingest(db, cfg, event)
    except _DB_ERRORS as exc:
        log.error(
            "webhook.store_failed", provider="shopmonkey", error=f"{type(exc).__name__}: {exc}"
        )
        return json_error(503, "could not store the event; retry later")
    if result.lead_id is None:
        return web.json_response({"success": True, "ignored": result.reason or result.result})
    if result.result == "created":
        daemon.wake_touchpoints.set()
    return web.json_response({"success": True, "leadId": str(result.lead_id)})
