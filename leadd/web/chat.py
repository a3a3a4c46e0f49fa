"""The customer's chat page, `/c/{token}`: the link in the first SMS.

The token in the path is the credential (256 bits, unknown to any other site), so the page has
no cookie; its forms post back to the same path. Every answer goes through `find_session`:
an unknown link is 404 and an expired one 410, both a friendly page with the shop's phone and
nothing of any lead.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from leadd.conversations import booking, chatpage, replies
from leadd.conversations.chatpage import ChatPage, Gone
from leadd.runtime import Runtime
from leadd.store.chat_models import ChatSession
from leadd.web import live, runtime_of
from leadd.web.pages import form, not_ready, render

GONE_TITLES = {404: "This link does not work", 410: "This link has expired"}


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/c/{token}", page)
    app.router.add_get("/c/{token}/thread", thread)
    app.router.add_post("/c/{token}/messages", post_message)
    app.router.add_post("/c/{token}/appointment", post_appointment)
    app.router.add_get("/c/{token}/events", events)


async def _session(request: web.Request) -> tuple[Runtime, ChatSession] | web.Response:
    rt = runtime_of(request)
    if rt is None:
        return not_ready(request)
    found = await chatpage.find_session(rt, request.match_info["token"])
    if isinstance(found, Gone):
        return render(
            request,
            "chat_gone.html",
            {"title": GONE_TITLES[found.status], "status": found.status, "shop": found.shop},
            found.status,
        )
    return rt, found


async def page(request: web.Request) -> web.Response:
    found = await _session(request)
    if isinstance(found, web.Response):
        return found
    rt, session = found
    return await _render_page(request, rt, await chatpage.open_page(rt, session))


async def _render_page(
    request: web.Request,
    rt: Runtime,
    view: ChatPage,
    *,
    status: int = 200,
    error: str | None = None,
    booking_error: str | None = None,
    draft: str = "",
) -> web.Response:
    location = chatpage.location_of(rt, view.session)
    context: dict[str, Any] = {
        "view": view,
        "token": request.match_info["token"],
        "tz": location.timezone,
        "now": rt.clock(),
        "error": error,
        "booking_error": booking_error,
        "draft": draft,
        "max_length": replies.MAX_CUSTOMER_MESSAGE,
        "days": _by_day(view.slots),
        "link": _link(rt, request),
    }
    return render(request, "chat.html", context, status)


def _by_day(slots: tuple[booking.Slot, ...]) -> list[tuple[str, list[booking.Slot]]]:
    days: dict[str, list[booking.Slot]] = {}
    for slot in slots:
        days.setdefault(slot.day, []).append(slot)
    return list(days.items())


async def thread(request: web.Request) -> web.Response:
    """The parts of the page that change (conversation, booking status): what the live
    script swaps in after an update."""
    found = await _session(request)
    if isinstance(found, web.Response):
        return found
    rt, session = found
    view = await chatpage.open_page(rt, session, seen=False)
    location = chatpage.location_of(rt, session)
    context = {"view": view, "tz": location.timezone, "link": _link(rt, request)}
    return render(request, "chat_live.html", context)


def _link(rt: Runtime, request: web.Request) -> str:
    """This page's address as messages carry it: shown as "(this page)" on the page."""
    return f"{rt.config.chat.base_url}/{request.match_info['token']}"


async def post_message(request: web.Request) -> web.Response:
    found = await _session(request)
    if isinstance(found, web.Response):
        return found
    rt, session = found
    text = (await form(request)).get("body", "")
    try:
        await replies.post_customer_message(rt, session, text)
    except replies.BadMessage as exc:
        view = await chatpage.open_page(rt, session)
        return await _render_page(request, rt, view, status=400, error=str(exc), draft=text)
    except replies.RateLimited:
        view = await chatpage.open_page(rt, session)
        error = "You are sending messages quickly. Wait a minute, then send again."
        return await _render_page(request, rt, view, status=429, error=error, draft=text)
    raise web.HTTPSeeOther(f"/c/{request.match_info['token']}#latest")


async def post_appointment(request: web.Request) -> web.Response:
    found = await _session(request)
    if isinstance(found, web.Response):
        return found
    rt, session = found
    value = (await form(request)).get("slot", "")
    try:
        await booking.request_appointment(rt, session, value)
    except booking.UnknownSlot:
        view = await chatpage.open_page(rt, session)
        error = (
            "Please pick one of the times listed."
            if not value
            else ("That time is no longer available. Please pick another.")
        )
        return await _render_page(request, rt, view, status=400, booking_error=error)
    except replies.RateLimited:
        view = await chatpage.open_page(rt, session)
        error = "Too many requests at once. Wait a minute, then try again."
        return await _render_page(request, rt, view, status=429, booking_error=error)
    raise web.HTTPSeeOther(f"/c/{request.match_info['token']}#booking")


async def events(request: web.Request) -> web.StreamResponse:
    """This conversation's updates. While it is connected the page counts as open."""
    found = await _session(request)
    if isinstance(found, web.Response):
        return found
    rt, session = found
    await chatpage.still_open(rt, session)

    async def still_open() -> bool:
        return await chatpage.still_open(rt, session)

    response = await live.stream(
        request, live.for_lead(session.lead_id), customer=True, on_tick=still_open
    )
    if not request.app[live.HUB].closing:  # not our shutdown: the page went away
        await chatpage.page_closed(rt, session)
    return response
