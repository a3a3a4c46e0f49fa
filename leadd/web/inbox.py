"""The staff inbox, `/inbox`: sign-in, the conversation list, one conversation and its actions.

Every page and action needs a signed-in session (a page redirects to the sign-in form; a
fragment or an event stream answers 401). Every form carries a CSRF token bound to the session
cookie; a post without it changes nothing (403). A lead of a location the person may not see
is "not found" (404), like one that does not exist. Moving, pausing and resuming a lead are the
ops use cases (leadd/operations/leads.py), with the person as the actor (staff:<e-mail>).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from leadd.config import StaffUser
from leadd.conversations import booking, inbox, replies, staff
from leadd.conversations.thread import actor
from leadd.lifecycle import can_transition
from leadd.operations import Conflict, NotFound, OpsError
from leadd.operations import leads as ops
from leadd.runtime import Runtime
from leadd.web import live, runtime_of
from leadd.web.pages import error_page, form, not_ready, ops_deps, parse_uuid, render

COOKIE = "leadd_staff"
SIGNIN_COOKIE = "leadd_signin"  # binds the sign-in form's CSRF token before there is a session
SENT_NOTES = {
    "web": "Shown on the customer's chat page (it is open now).",
    "sms": "Sent by text message.",
}


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/inbox/sign-in", signin_page)
    r.add_post("/inbox/sign-in", signin)
    r.add_post("/inbox/sign-out", signout)
    r.add_get("/inbox", conversations)
    r.add_get("/inbox/list", conversations_part)
    r.add_get("/inbox/events", events)
    r.add_get("/inbox/leads/{lead_id}", conversation)
    r.add_get("/inbox/leads/{lead_id}/timeline", conversation_part)
    r.add_post("/inbox/leads/{lead_id}/reply", reply)
    r.add_post("/inbox/leads/{lead_id}/state", set_state)
    r.add_post("/inbox/leads/{lead_id}/appointments/{request_id}/confirm", confirm)
    r.add_post("/inbox/leads/{lead_id}/{action:pause|resume|assign}", lead_action)


@dataclass(frozen=True)
class Staff:
    rt: Runtime
    user: StaffUser
    csrf: str


async def _staff(request: web.Request, *, page: bool = True) -> Staff | web.Response:
    rt = runtime_of(request)
    if rt is None:
        return not_ready(request)
    session = request.cookies.get(COOKIE)
    user = await staff.current_user(rt, session)
    if user is None or session is None:
        if page and request.method == "GET":
            raise web.HTTPSeeOther("/inbox/sign-in")
        return error_page(request, 401, "Please sign in", "Sign in to the inbox first.")
    return Staff(rt, user, staff.csrf_token(session))


async def _staff_post(request: web.Request) -> tuple[Staff, dict[str, str]] | web.Response:
    """A signed-in form post with a valid CSRF token, and its fields."""
    who = await _staff(request, page=False)
    if isinstance(who, web.Response):
        return who
    fields = await form(request)
    if not staff.csrf_ok(request.cookies.get(COOKIE), fields.get("csrf")):
        return error_page(
            request,
            403,
            "This form has expired",
            "Nothing was changed. Reload the page and try again.",
        )
    return who, fields


def _context(who: Staff, **extra: Any) -> dict[str, Any]:
    return {"user": who.user, "csrf": who.csrf, "now": who.rt.clock(), **extra}


def _cookie(response: web.StreamResponse, rt: Runtime, name: str, value: str) -> None:
    # Behind https the cookies are Secure; a plain-http trial run (the demo) must still work.
    response.set_cookie(
        name,
        value,
        path="/inbox",
        httponly=True,
        samesite="Lax",
        secure=rt.config.http.public_url.startswith("https://"),
        max_age=int(staff.SESSION_TTL.total_seconds()),
    )


# ---------------------------------------------------------------------- sign-in


async def signin_page(request: web.Request) -> web.Response:
    rt = runtime_of(request)
    if rt is None:
        return not_ready(request)
    return _signin_form(request, rt)


def _signin_form(
    request: web.Request, rt: Runtime, status: int = 200, error: str | None = None, email: str = ""
) -> web.Response:
    pre = request.cookies.get(SIGNIN_COOKIE) or staff.new_token()
    response = render(
        request,
        "inbox_signin.html",
        {"csrf": staff.csrf_token(pre), "error": error, "email": email},
        status,
    )
    _cookie(response, rt, SIGNIN_COOKIE, pre)
    return response


async def signin(request: web.Request) -> web.Response:
    rt = runtime_of(request)
    if rt is None:
        return not_ready(request)
    fields = await form(request)
    email = fields.get("email", "")[:320]
    if not staff.csrf_ok(request.cookies.get(SIGNIN_COOKIE), fields.get("csrf")):
        return _signin_form(request, rt, 403, "The sign-in form expired. Please try again.", email)
    result = await staff.sign_in(rt, email, fields.get("password", ""), request.remote or "")
    if result.retry_at is not None:
        minutes = max(1, round((result.retry_at - rt.clock()).total_seconds() / 60))
        error = f"Too many failed sign-ins. Try again in {minutes} minute(s)."
        return _signin_form(request, rt, 429, error, email)
    if result.session is None:
        return _signin_form(request, rt, 401, "Wrong e-mail or password.", email)
    response = web.HTTPSeeOther("/inbox")
    _cookie(response, rt, COOKIE, result.session)
    response.del_cookie(SIGNIN_COOKIE, path="/inbox")
    raise response


async def signout(request: web.Request) -> web.Response:
    posted = await _staff_post(request)
    if isinstance(posted, web.Response):
        return posted
    session = request.cookies.get(COOKIE, "")
    await staff.sign_out(posted[0].rt, session)
    response = web.HTTPSeeOther("/inbox/sign-in")
    response.del_cookie(COOKIE, path="/inbox")
    raise response


# ---------------------------------------------------------------------- the list


async def conversations(request: web.Request) -> web.Response:
    return await _list(request, "inbox_list.html")


async def conversations_part(request: web.Request) -> web.Response:
    return await _list(request, "inbox_list_part.html", page=False)


async def _list(request: web.Request, template: str, *, page: bool = True) -> web.Response:
    who = await _staff(request, page=page)
    if isinstance(who, web.Response):
        return who
    q, location = request.query.get("q", ""), request.query.get("location", "")
    items = await inbox.list_conversations(who.rt, who.user, q, location)
    names = {loc.id: loc.name for loc in who.rt.config.locations}
    mine = {k: v for k, v in names.items() if who.user.sees(k)}
    context = _context(who, items=items, q=q, location=location, locations=names, mine=mine)
    return render(request, template, context)


async def events(request: web.Request) -> web.StreamResponse:
    who = await _staff(request, page=False)
    if isinstance(who, web.Response):
        return who
    session = request.cookies.get(COOKIE)

    async def still_signed_in() -> bool:
        return await staff.current_user(who.rt, session) is not None

    return await live.stream(
        request, live.for_locations(who.user.visible), customer=False, on_tick=still_signed_in
    )


# ---------------------------------------------------------------------- one conversation


def _lead_id(request: web.Request) -> uuid.UUID | None:
    return parse_uuid(request.match_info["lead_id"])


async def conversation(request: web.Request) -> web.Response:
    who = await _staff(request)
    if isinstance(who, web.Response):
        return who
    note = SENT_NOTES.get(request.query.get("sent", ""))
    return await _conversation_page(request, who, note=note)


async def _conversation_page(
    request: web.Request,
    who: Staff,
    *,
    status: int = 200,
    note: str | None = None,
    error: str | None = None,
    draft: str = "",
    template: str = "inbox_lead.html",
) -> web.Response:
    lead_id = _lead_id(request)
    c = await inbox.open_conversation(who.rt, who.user, lead_id) if lead_id else None
    if c is None:
        return _not_found(request)
    config = who.rt.config
    location = config.location(c.lead.location_id) or config.locations[0]
    context = _context(
        who,
        c=c,
        location=location,
        tz=location.timezone,
        targets=[s for s in ops.OPERATOR_STATES if can_transition(c.lead.state, s)],
        note=note,
        error=error,
        draft=draft,
        max_length=replies.MAX_STAFF_MESSAGE,
        page_open=replies.page_open(c.inbox.seen_at, who.rt.clock()),
    )
    return render(request, template, context, status)


async def conversation_part(request: web.Request) -> web.Response:
    who = await _staff(request, page=False)
    if isinstance(who, web.Response):
        return who
    return await _conversation_page(request, who, template="inbox_lead_part.html")


def _not_found(request: web.Request) -> web.Response:
    return error_page(
        request,
        404,
        "Conversation not found",
        "It does not exist, or it belongs to a location you do not have access to.",
    )


def _back(lead_id: uuid.UUID, query: str = "") -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/inbox/leads/{lead_id}{query}")


async def _visible_lead(
    request: web.Request,
) -> tuple[Staff, dict[str, str], uuid.UUID] | web.Response:
    """A signed-in, CSRF-checked post about a lead the person may see (else 404)."""
    posted = await _staff_post(request)
    if isinstance(posted, web.Response):
        return posted
    who, fields = posted
    lead_id = _lead_id(request)
    if lead_id is None or await inbox.find(who.rt, who.user, lead_id) is None:
        return _not_found(request)
    return who, fields, lead_id


async def reply(request: web.Request) -> web.Response:
    posted = await _visible_lead(request)
    if isinstance(posted, web.Response):
        return posted
    who, fields, lead_id = posted
    text = fields.get("body", "")
    try:
        sent = await replies.staff_reply(who.rt, who.user, lead_id, text)
    except replies.BadMessage as exc:
        return await _conversation_page(request, who, status=400, error=str(exc), draft=text)
    except LookupError:
        return _not_found(request)
    if sent.refused is not None:
        return await _conversation_page(request, who, status=409, error=sent.refused, draft=text)
    raise _back(lead_id, f"?sent={sent.via}#latest")


async def set_state(request: web.Request) -> web.Response:
    """The ops use case `set_state`: the lifecycle's rule, a reason, the person as actor."""
    posted = await _visible_lead(request)
    if isinstance(posted, web.Response):
        return posted
    who, fields, lead_id = posted
    target = fields.get("state", "")
    try:
        reason = inbox.state_reason(target, fields.get("reason", ""))
    except inbox.ActionError as exc:
        return await _conversation_page(request, who, status=400, error=str(exc))
    action = ops.set_state(
        ops_deps(who.rt), lead_id, state=target, reason=reason, actor=actor(who.user.email)
    )
    return await _ops_action(request, who, lead_id, action)


async def confirm(request: web.Request) -> web.Response:
    posted = await _visible_lead(request)
    if isinstance(posted, web.Response):
        return posted
    who, _, lead_id = posted
    raw_id = request.match_info["request_id"]
    if not raw_id.isdigit() or len(raw_id) > 18:
        return _not_found(request)
    moved = await booking.confirm_appointment(who.rt, who.user, lead_id, int(raw_id))
    if moved is None:
        error = (
            "That request is not waiting any more (already confirmed, or replaced by a newer one)."
        )
        return await _conversation_page(request, who, status=409, error=error)
    raise _back(lead_id)


async def lead_action(request: web.Request) -> web.Response:
    """Pause or resume the automated sequence (the ops use cases), or assign to me."""
    posted = await _visible_lead(request)
    if isinstance(posted, web.Response):
        return posted
    who, _, lead_id = posted
    name = request.match_info["action"]
    if name == "assign":
        if not await inbox.assign_to_me(who.rt, who.user, lead_id):
            return _not_found(request)
        raise _back(lead_id)
    pause = ops.pause if name == "pause" else ops.resume
    return await _ops_action(
        request, who, lead_id, pause(ops_deps(who.rt), lead_id, actor=actor(who.user.email))
    )


async def _ops_action(
    request: web.Request, who: Staff, lead_id: uuid.UUID, action: Awaitable[object]
) -> web.Response:
    """Run an ops use case; its refusal shown on the conversation page (nothing changed)."""
    try:
        await action
    except NotFound:
        return _not_found(request)
    except Conflict as exc:
        return await _conversation_page(request, who, status=409, error=_sentence(exc.reason))
    except OpsError as exc:
        return await _conversation_page(request, who, status=400, error=_sentence(exc.reason))
    raise _back(lead_id)


def _sentence(reason: str) -> str:
    return reason[:1].upper() + reason[1:] + ("" if reason.endswith(".") else ".")
