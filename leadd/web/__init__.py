"""The aiohttp application: health, readiness, metrics, and the provider webhooks.

Every 4xx/5xx answer is a JSON body `{"success": false, "error": "<reason>"}`. Request timing
goes to a histogram labelled by route template (never by raw path: no ids in labels).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from leadd import __version__, metrics
from leadd.logs import get_logger
from leadd.web.connections import ConnectionGuard

if TYPE_CHECKING:
    from leadd.daemon import Daemon

log = get_logger(__name__)

DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")
GUARD: web.AppKey[ConnectionGuard] = web.AppKey("connection_guard")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, reason: str, **extra: Any) -> web.Response:
    return web.json_response({"success": False, "error": reason, **extra}, status=status)


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
            reason = (
                f"request body larger than {request.app[DAEMON].config.http.max_body_bytes} bytes"
            )
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
    daemon = request.app[DAEMON]
    problems = await daemon.readiness_problems()
    body = {
        "status": "ready" if not problems else "not ready",
        "problems": problems,
        "tasks": {n: t.as_json() for n, t in daemon.supervisor.tasks.items()},
        "providers": daemon.config.providers_summary(),
    }
    return web.json_response(body, status=200 if not problems else 503)


async def metrics_handler(request: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def create_app(daemon: Daemon) -> web.Application:
    guard = ConnectionGuard.from_config(daemon.config)
    app = web.Application(
        # The guard inside: its refusals (408, 413, 415) become JSON errors and are measured.
        middlewares=[_errors_and_metrics, guard.middleware],
        client_max_size=daemon.config.http.max_body_bytes,
    )
    app[DAEMON] = daemon
    app[GUARD] = guard
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    from leadd import inbound
    from leadd.web import shopmonkey  # the provider endpoints live in their own modules

    shopmonkey.setup_routes(app)
    inbound.setup_routes(app)
    from leadd import api  # the ops API (issue 9): off without api.tokens

    api.setup_routes(app, daemon.config, lambda: daemon.ops)
    from leadd.web import pages  # the customer chat page and the staff inbox (issue 10)

    pages.setup(app, lambda: daemon.runtime, daemon.db_ready)
    return app
