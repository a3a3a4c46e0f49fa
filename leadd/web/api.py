"""The ops API under /api/v1 (issue 9): JSON over the operations use cases.

Bearer tokens from config (`api.tokens`), compared in constant time against every token and
never logged. With none configured the API is off: no /api/v1 route exists (404). Each handler
parses and checks the request, calls one use case, and maps the result: OpsError subclasses to
400/403/404/409/422, a database failure to 503, always a JSON body like web.json_error.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from leadd.config import ApiToken, Config
from leadd.intake.events import decode_json
from leadd.logs import get_logger
from leadd.operations import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    OpsDeps,
    OpsError,
    Unprocessable,
    params,
    views,
)
from leadd.operations import leads as lead_ops
from leadd.operations import optouts as optout_ops
from leadd.operations import report as report_ops
from leadd.store import DB_ERRORS
from leadd.web import json_error

log = get_logger(__name__)

PREFIX = "/api/v1"
DepsProvider = Callable[[], OpsDeps | None]  # None until the database is ready
Handler = Callable[[web.Request, OpsDeps, ApiToken], Awaitable[web.Response]]

_STATUS: dict[type[OpsError], int] = {
    BadRequest: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Unprocessable: 422,
}
LIST_PARAMS = ("state", "location", "since", "until", "q", "cursor", "limit")


@dataclass(frozen=True)
class Route:
    """One endpoint; api_spec.py describes each one for the OpenAPI document."""

    method: str
    path: str
    handler: Handler
    role: str  # read | write
    summary: str


# --------------------------------------------------------------------------- handlers


async def list_leads(request: web.Request, deps: OpsDeps, token: ApiToken) -> web.Response:
    query = _query(request, LIST_PARAMS)
    result = await lead_ops.list_leads(
        deps,
        state=query.get("state"),
        location=query.get("location"),
        since=_time(query, "since"),
        until=_time(query, "until"),
        q=query.get("q"),
        cursor=query.get("cursor"),
        limit=params.limit(query["limit"]) if "limit" in query else params.DEFAULT_LIMIT,
    )
    return web.json_response(
        {
            "leads": [views.lead_summary(lead) for lead in result.leads],
            "next_cursor": result.next_cursor,
        }
    )


async def show_lead(request: web.Request, deps: OpsDeps, token: ApiToken) -> web.Response:
    _query(request, ())
    detail = await lead_ops.show_lead(deps, _lead_id(request))
    return web.json_response(views.lead_detail(detail))


async def set_state(request: web.Request, deps: OpsDeps, token: ApiToken) -> web.Response:
    lead_id = _lead_id(request)
    body = await _body(request, required=("state", "reason"))
    change = await lead_ops.set_state(
        deps, lead_id, state=body["state"], reason=body["reason"], actor=token.name
    )
    return web.json_response(views.state_change(change))


async def pause(request: web.Request, deps: OpsDeps, token: ApiToken) -> web.Response:
    lead_id = _lead_id(request)
    await _body(request, required=(), allow_empty=True)
    return web.json_response(
        views.pause_change(await lead_ops.pause(deps, lead_id, actor=token.name))
    )


async def resume(request: web.Request, deps: OpsDeps, token: ApiToken) -> web.Response:
    lead_id = _lead_id(request)
    await _body(request, required=(), allow_empty=True)
    return web.json_response(
        views.pause_change(await lead_ops.resume(deps, lead_id, actor=token.name))
    )


async def send_message(request: web.Request, deps: OpsDeps, token: ApiToken) -> web.Response:
    lead_id = _lead_id(request)
    body = await _body(request, required=("channel", "body"))
    queued = await lead_ops.send_staff_message(
        deps, lead_id, channel=body["channel"], body=body["body"], author=token.name
    )
    return web.json_response(views.staff_message(queued), status=202)


async def report(request: web.Request, deps: OpsDeps, token: ApiToken) -> web.Response:
    query = _query(request, ("since", "until", "location"))
    result = await report_ops.funnel_report(
        deps,
        since=_time(query, "since"),
        until=_time(query, "until"),
        location=query.get("location"),
    )
    return web.json_response(views.report(result))


async def list_opt_outs(request: web.Request, deps: OpsDeps, token: ApiToken) -> web.Response:
    query = _query(request, ("channel", "cursor", "limit"))
    result = await optout_ops.list_opt_outs(
        deps,
        channel=query.get("channel"),
        cursor=query.get("cursor"),
        limit=params.limit(query["limit"]) if "limit" in query else params.DEFAULT_LIMIT,
    )
    return web.json_response(
        {"opt_outs": [views.opt_out(o) for o in result.opt_outs], "next_cursor": result.next_cursor}
    )


async def delete_opt_out(request: web.Request, deps: OpsDeps, token: ApiToken) -> web.Response:
    _query(request, ())
    lifted = await optout_ops.lift_opt_out(
        deps,
        channel=request.match_info["channel"],
        address=request.match_info["address"],
        actor=token.name,
    )
    log.info("optout.lifted", channel=lifted.channel, address=lifted.address, actor=token.name)
    return web.json_response({"deleted": views.opt_out(lifted)})


# --------------------------------------------------------------------------- request parsing


def _lead_id(request: web.Request) -> uuid.UUID:
    return params.lead_id(request.match_info["id"])


def _query(request: web.Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query string as a dict; an unknown or repeated parameter is a 400 naming it."""
    out: dict[str, str] = {}
    for key, value in request.query.items():
        if key not in allowed:
            expected = ", ".join(allowed) if allowed else "none"
            raise BadRequest(key[:40], f"unknown parameter; allowed: {expected}")
        if key in out:
            raise BadRequest(key, "given more than once")
        out[key] = value
    return out


def _time(query: dict[str, str], name: str) -> Any:
    return params.timestamp(name, query[name]) if name in query else None


async def _body(
    request: web.Request, *, required: tuple[str, ...], allow_empty: bool = False
) -> dict[str, str]:
    """A JSON object of string fields, exactly `required` (none other)."""
    raw = await request.read()
    if allow_empty and not raw.strip():
        return {}
    try:
        data = decode_json(raw)
    except ValueError as exc:
        raise BadRequest("body", str(exc)) from None
    if not isinstance(data, dict):
        raise BadRequest("body", "expected a JSON object")
    for key in data:
        if key not in required:
            raise BadRequest(
                str(key)[:40], f"unknown field; expected: {', '.join(required) or 'none'}"
            )
    for key in required:
        if not isinstance(data.get(key), str):
            raise BadRequest(key, "required: a string")
    return data


# --------------------------------------------------------------------------- auth and wiring


def _digest(secret: str) -> bytes:
    # Equal-length values for compare_digest, whatever the presented token's length.
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


def authenticate(header: str, tokens: tuple[ApiToken, ...]) -> ApiToken | None:
    """The token matching `Authorization: Bearer <token>`; every token is compared (in
    constant time), so the time taken says nothing about which or how many matched."""
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    candidate = _digest(presented.strip())
    found = None
    for token in tokens:
        if hmac.compare_digest(_digest(token.token), candidate) and found is None:
            found = token
    return found


def _endpoint(route: Route, tokens: tuple[ApiToken, ...], deps: DepsProvider) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        token = authenticate(request.headers.get("Authorization", ""), tokens)
        if token is None:  # checked first: the answer is the same whether the lead exists
            response = json_error(401, "missing or invalid bearer token")
            response.headers["WWW-Authenticate"] = 'Bearer realm="leadd"'
            return response
        if route.role == "write" and token.role != "write":
            return json_error(403, f"this token's role is {token.role}; this route needs write")
        current = deps()
        if current is None:
            return json_error(503, "database not ready; retry later")
        try:
            return await route.handler(request, current, token)
        except OpsError as exc:
            return json_error(_STATUS[type(exc)], exc.reason, **exc.extra)
        except DB_ERRORS as exc:
            log.warning("api.database_error", route=route.path, error=type(exc).__name__)
            return json_error(503, "database unavailable; retry later")

    return handle


ROUTES: tuple[Route, ...] = (
    Route("GET", f"{PREFIX}/leads", list_leads, "read", "List leads, newest first"),
    Route("GET", f"{PREFIX}/leads/{{id}}", show_lead, "read", "A lead and its timeline"),
    Route("POST", f"{PREFIX}/leads/{{id}}/state", set_state, "write", "Move a lead forward"),
    Route("POST", f"{PREFIX}/leads/{{id}}/pause", pause, "write", "Pause the automated sequence"),
    Route(
        "POST", f"{PREFIX}/leads/{{id}}/resume", resume, "write", "Resume the automated sequence"
    ),
    Route("POST", f"{PREFIX}/leads/{{id}}/messages", send_message, "write", "Send a staff SMS"),
    Route("GET", f"{PREFIX}/report", report, "read", "The funnel report"),
    Route("GET", f"{PREFIX}/opt-outs", list_opt_outs, "read", "List opt-outs, newest first"),
    Route(
        "DELETE",
        f"{PREFIX}/opt-outs/{{channel}}/{{address}}",
        delete_opt_out,
        "write",
        "Lift an e-mail opt-out",
    ),
)


def setup_routes(app: web.Application, config: Config, deps: DepsProvider) -> None:
    """Add the API's routes, or none (every /api/v1 path then answers 404) without tokens."""
    tokens = config.api.tokens
    if not tokens:
        log.info("api.off", reason="no api.tokens configured: /api/v1 answers 404")
        return
    from leadd.web import api_spec

    for route in ROUTES:
        app.router.add_route(route.method, route.path, _endpoint(route, tokens, deps))
    document = api_spec.build(ROUTES)

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get(f"{PREFIX}/openapi.json", openapi)
    log.info("api.on", credentials=len(tokens), routes=len(ROUTES) + 1)
