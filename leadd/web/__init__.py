"""The aiohttp application: health, readiness, metrics, and the provider webhooks.

Every 4xx/5xx answer is a JSON body `{"success": false, "error": "<reason>"}`. Request timing
goes to a histogram labelled by route template (never by raw path: no ids in labels).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from leadd import __version__, metrics
from leadd.config import Config
from leadd.logs import get_logger
from leadd.operations import OpsDeps
from leadd.runtime import Runtime
from leadd.web.connections import ConnectionGuard

log = get_logger(__name__)

# The app is built before the database is reached (so /healthz answers and /readyz can say
# why it is not ready): handlers ask the provider for the runtime, None until then.
RuntimeProvider = Callable[[], Runtime | None]
# /readyz: (ready, body) from whoever runs the app (the daemon: database, tasks, providers).
Readiness = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]
CONFIG: web.AppKey[Config] = web.AppKey("config")
RUNTIME: web.AppKey[RuntimeProvider] = web.AppKey("runtime")
READINESS: web.AppKey[Readiness] = web.AppKey("readiness")
GUARD: web.AppKey[ConnectionGuard] = web.AppKey("connection_guard")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def runtime_of(request: web.Request) -> Runtime | None:
    """What the services need; None until the database is ready (answer 503 then)."""
    return request.app[RUNTIME]()


def json_error(status: int, reason: str, **extra: Any) -> web.Response:
    return web.json_response({"success": False, "error": reason, **extra}, status=status)


def store_failed(provider: str, exc: BaseException) -> web.Response:
    """A provider callback the database could not take: 503 with a JSON body, so the
    provider retries; every provider endpoint answers it the same way."""
    log.error("webhook.store_failed", provider=provider, error=f"{type(exc).__name__}: {exc}")
    return json_error(503, "could not store the event; retry later")


@web.middleware
async def _errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    route = request.match_info.route.resource
    route_name = route.canonical if route is not None else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        if exc.status < 400:
            raise
        reason = exc.reason
        if exc.status == 413:
            reason = f"request body larger than {request.app[CONFIG].http.max_body_bytes} bytes"
        elif exc.text and not exc.text.startswith(f"{exc.status}:"):
            reason = exc.text
        response = json_error(exc.status, reason)
        if exc.keep_alive is False:  # e.g. a body left unread: the connection must close
            response.force_close()
        return response
    except Exception as exc:
        if request.transport is None or request.transport.is_closing():
            # The client went away (typically mid-body): its doing, not an error of ours.
            # Drop the traceback now: it holds the reading frame and the partial body in a
            # cycle through the request, otherwise freed only by a full garbage collection.
            exc.__traceback__ = None
            status = 400
            log.info(
                "http.client_gone",
                route=route_name,
                method=request.method,
                error=type(exc).__name__,
            )
            return json_error(400, "client closed the connection")
        log.exception("http.unhandled", route=route_name, method=request.method)
        return json_error(500, "internal error")
    finally:
        metrics.HTTP_DURATION.labels(route_name, request.method, str(status)).observe(
            time.perf_counter() - start
        )


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process and its event loop answer. Never touches the database."""
    return web.json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 only when the database answers and every supervised task runs."""
    ready, body = await request.app[READINESS]()
    return web.json_response(body, status=200 if ready else 503)


async def metrics_handler(request: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def create_app(
    config: Config,
    *,
    runtime: RuntimeProvider,
    readiness: Readiness,
    runtime_ready: asyncio.Event | None = None,
) -> web.Application:
    """`runtime_ready`: set once `runtime` returns the Runtime (the pages' live listener waits
    for it; without it there are no live updates)."""
    guard = ConnectionGuard.from_config(config)
    app = web.Application(
        # The guard inside: its refusals (408, 413, 415) become JSON errors and are measured.
        middlewares=[_errors_and_metrics, guard.middleware],
        client_max_size=config.http.max_body_bytes,
    )
    app[CONFIG] = config
    app[RUNTIME] = runtime
    app[READINESS] = readiness
    app[GUARD] = guard
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    # the provider endpoints live in their own modules
    from leadd.web import sendgrid, shopmonkey, twilio, unsubscribe

    for module in (shopmonkey, twilio, sendgrid, unsubscribe):
        module.setup_routes(app)
    from leadd.web import api  # the ops API (issue 9): off without api.tokens

    def ops() -> OpsDeps | None:
        rt = runtime()
        return None if rt is None else OpsDeps(rt.config, rt.store, rt.clock, rt.wake)

    api.setup_routes(app, config, ops)
    from leadd.web import pages  # the customer chat page and the staff inbox (issue 10)

    pages.setup(app, runtime_ready)
    return app
