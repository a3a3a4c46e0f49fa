"""The Shopmonkey order webhook: verify first, then store idempotently, then answer.

Nothing here calls a provider: enrichment and messaging happen off the request path. A
delivery is remembered (by its signed webhook-id) in the transaction that stores it, so a
replay inside the signature's window answers `duplicate` and changes nothing. Answers: 401 a
signature refused, 400 a body that is not a usable order event (nothing written), 422 an order
the database refuses (recorded in `rejected_orders`), 503 the database unavailable (retry).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from leadd import intake, metrics
from leadd.intake import events
from leadd.logs import get_logger
from leadd.providers import shopmonkey_webhook as signing
from leadd.store import DB_ERRORS
from leadd.web import json_error, runtime_of, store_failed

log = get_logger(__name__)

PATH = "/webhooks/shopmonkey/order"


def setup_routes(app: web.Application) -> None:
    app.router.add_post(PATH, order_webhook)


async def order_webhook(request: web.Request) -> web.Response:
    rt = runtime_of(request)
    if rt is None:
        return json_error(503, "database not ready; retry later")
    cfg = rt.config
    raw = await request.read()
    try:
        delivery = signing.verify_webhook(
            request.headers,
            raw,
            cfg.shopmonkey.webhook_secrets,
            now=rt.clock().timestamp(),
            allow_legacy=cfg.shopmonkey.accept_legacy_signature,
        )
    except signing.WebhookSignatureError as exc:
        metrics.WEBHOOKS_REJECTED.labels("shopmonkey", "signature").inc()
        log.warning("webhook.rejected", provider="shopmonkey", reason=exc.reason)
        return json_error(401, f"signature rejected: {exc.reason}")
    delivery_id = events.clean_delivery_id(
        request.headers.get("webhook-id") or request.headers.get("X-Request-Id")
    )
    replay = events.Replay(delivery.digest, dt.datetime.fromtimestamp(delivery.expires_at, dt.UTC))
    try:
        event = events.parse_event(events.decode_json(raw), "webhook", delivery_id, replay)
    except ValueError as exc:  # events.BadEvent included
        metrics.WEBHOOKS_REJECTED.labels("shopmonkey", "invalid").inc()
        log.warning(
            "webhook.invalid", provider="shopmonkey", reason=str(exc), delivery_id=delivery_id
        )
        # A 400 changes nothing: Shopmonkey sees the reason; the log and the metric count it.
        return json_error(400, str(exc))
    if isinstance(event, str):
        metrics.LEADS_INGESTED.labels("webhook", "ignored").inc()
        return web.json_response({"success": True, "ignored": event})
    try:
        result = await intake.receive_webhook(rt, event)
    except DB_ERRORS as exc:
        return store_failed("shopmonkey", exc)
    if result.result == "unstorable":
        return json_error(422, result.reason or "the order could not be stored")
    if result.lead_id is None:
        return web.json_response({"success": True, "ignored": result.reason or result.result})
    answer: dict[str, Any] = {"success": True, "leadId": str(result.lead_id)}
    if result.result in ("duplicate", "replayed"):
        answer["duplicate"] = True
    return web.json_response(answer)
