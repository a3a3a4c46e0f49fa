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

if TYPE_CHECKING:
    from leadd.daemon import Daemon

log = get_logger(__name__)

DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")
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
        return json_error(exc.status, reason)
    except Exception:
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
    app = web.Application(
        middlewares=[_errors_and_metrics], client_max_size=daemon.config.http.max_body_bytes
    )
    app[DAEMON] = daemon
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    from leadd import webhooks  # the provider endpoints live in their own module

    webhooks.setup_routes(app)
    from leadd.web import pages  # customer chat page and staff inbox

    pages.setup(
        app,
        pages.DepsSource(
            config=daemon.config,
            database=lambda: daemon.db,
            ready=daemon.db_ready,
            wake=daemon.wake_touchpoints.set,
        ),
    )
    return app
