"""Provider webhook endpoints: verify first, then store idempotently, then answer.

Nothing here calls a provider: enrichment and messaging happen off the request path. A
Shopmonkey delivery is remembered (by its signed webhook-id) in the transaction that stores it,
so a replay inside the signature's window answers `duplicate` and changes nothing. An order
the database refuses is a 422 recorded in `rejected_orders`; only the database being
unavailable is a 503 (retry later).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from aiohttp import web

from leadd import leads, metrics
from leadd.errors import describe_error
from leadd.logs import get_logger
from leadd.providers import shopmonkey
from leadd.web import DAEMON, json_error

log = get_logger(__name__)


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/shopmonkey/order", shopmonkey_order)
    from leadd import inbound

    inbound.setup_routes(app)


def _delivery_id(request: web.Request) -> str | None:
    """Shopmonkey's delivery id for the lead's timeline: printable and bounded, or None (it
    is stored as JSON, where a lone surrogate from an undecodable header byte is refused)."""
    value = request.headers.get("webhook-id") or request.headers.get("X-Request-Id")
    if not value or len(value) > leads.MAX_ID_LENGTH or not value.isprintable():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


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
        delivery = shopmonkey.verify_webhook(
            request.headers,
            raw,
            cfg.shopmonkey.webhook_secrets,
            now=time.time(),
            allow_legacy=cfg.shopmonkey.accept_legacy_signature,
        )
    except shopmonkey.WebhookSignatureError as exc:
        metrics.WEBHOOKS_REJECTED.labels("shopmonkey", "signature").inc()
        log.warning("webhook.rejected", provider="shopmonkey", reason=exc.reason)
        return json_error(401, f"signature rejected: {exc.reason}")
    delivery_id = _delivery_id(request)
    replay = leads.Replay(delivery.digest, dt.datetime.fromtimestamp(delivery.expires_at, dt.UTC))
    try:
        event = leads.parse_event(decode_json(raw), "webhook", delivery_id, replay)
    except (ValueError, leads.BadEvent) as exc:
        metrics.WEBHOOKS_REJECTED.labels("shopmonkey", "invalid").inc()
        log.warning(
            "webhook.invalid", provider="shopmonkey", reason=str(exc), delivery_id=delivery_id
        )
        # A 400 changes nothing: Shopmonkey sees the reason; the log and the metric count it.
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
    except Exception as exc:
        if leads.is_transient(exc):
            log.error(
                "webhook.store_failed", provider="shopmonkey", error=f"{type(exc).__name__}: {exc}"
            )
            return json_error(503, "could not store the event; retry later")
        # This one order cannot be stored (a value the database refuses): retrying will not
        # help, and a 5xx would keep Shopmonkey retrying it and flag the webhook as failing.
        log.exception("webhook.order_unstorable", provider="shopmonkey", order_id=event.order_id)
        reason = f"the order could not be stored: {describe_error(exc)}"
        await leads.record_rejection(db, "webhook", event.order, "unstorable", reason)
        return json_error(422, reason)
    if result.lead_id is None:
        return web.json_response({"success": True, "ignored": result.reason or result.result})
    if result.result == "created":
        daemon.wake_touchpoints.set()
    answer: dict[str, Any] = {"success": True, "leadId": str(result.lead_id)}
    if result.result in ("duplicate", "replayed"):
        answer["duplicate"] = True
    return web.json_response(answer)
