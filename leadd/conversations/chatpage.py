"""The customer's chat page: what it shows for a token, or why it cannot (unknown, expired).

The page names the customer by first name only: no last name, phone or e-mail ever reaches
it. An unknown or expired link shows the shop and its phone, nothing of any lead."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import phonenumbers

from leadd import chatlinks as links
from leadd import compliance
from leadd.config import Location
from leadd.conversations import booking, replies
from leadd.conversations.thread import Line, lines
from leadd.runtime import Runtime
from leadd.store.chat_models import AppointmentRequest, ChatSession, ServiceLine

CUSTOMER_CHANNELS = ("sms", "web")  # e-mails are not part of the chat
CLOSE_GRACE = dt.timedelta(seconds=20)


@dataclass(frozen=True)
class Shop:
    name: str
    business: str
    phone: str | None  # E.164, for tel: links
    phone_text: str | None  # as people write it locally
    address: str
    hours_today: str


@dataclass(frozen=True)
class ChatPage:
    session: ChatSession
    shop: Shop
    estimate: tuple[ServiceLine, ...]
    total: float | None
    messages: tuple[Line, ...]  # names: a staff member's first name
    slots: tuple[booking.Slot, ...]
    requested: AppointmentRequest | None  # the latest booking request, if any


@dataclass(frozen=True)
class Gone:
    """No page for this link: 404 unknown, 410 expired."""

    status: int
    shop: Shop


def shop_of(rt: Runtime, location: Location) -> Shop:
    hours = compliance.BusinessHours(location.hours)
    return Shop(
        name=location.name,
        business=rt.config.tenant.name,
        phone=location.phone,
        phone_text=phone_text(location.phone),
        address=location.address,
        hours_today=hours.describe_day(rt.clock(), location.timezone),
    )


def phone_text(phone: str | None) -> str | None:
    if not phone:
        return None
    number = phonenumbers.parse(phone, None)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)


async def find_session(rt: Runtime, token: str) -> ChatSession | Gone:
    """The live session of a link, or Gone."""
    session = None
    if links.TOKEN_SHAPE.fullmatch(token):
        session = await rt.store.chat_session(token_hash=links.token_hash(token))
    if session is None:
        return Gone(404, shop_of(rt, rt.config.locations[0]))
    if session.expires_at <= rt.clock():
        return Gone(410, shop_of(rt, location_of(rt, session)))
    return session


async def open_page(rt: Runtime, session: ChatSession, *, seen: bool = True) -> ChatPage:
    """Everything the page shows; `seen`: the customer is looking at it now."""
    location = location_of(rt, session)
    store = rt.store
    if seen:
        await store.touch_seen(lead_id=session.lead_id, at=rt.clock())
    messages = await store.chat_thread(lead_id=session.lead_id, channels=CUSTOMER_CHANNELS)
    requests = await store.appointment_requests(lead_id=session.lead_id)
    prices = [s.price for s in session.services]
    total = sum(p for p in prices if p is not None) if any(p is not None for p in prices) else None
    return ChatPage(
        session=session,
        shop=shop_of(rt, location),
        estimate=session.services,
        total=total,
        messages=lines(rt.config, messages, first_names=True),
        slots=tuple(booking.slots(location, rt.clock())),
        requested=requests[0] if requests else None,
    )


async def still_open(rt: Runtime, session: ChatSession) -> bool:
    """The page's live stream is connected: the page counts as open (False once the link has
    expired: the stream ends)."""
    if session.expires_at <= rt.clock():
        return False
    await rt.store.touch_seen(lead_id=session.lead_id, at=rt.clock())
    return True


async def page_closed(rt: Runtime, session: ChatSession) -> None:
    """The page's live stream ended (tab closed, or reloading: a reload reconnects within the
    grace). From then on a staff reply goes by SMS."""
    open_until = rt.clock() - replies.PAGE_OPEN_FOR + CLOSE_GRACE
    await rt.store.page_closed(lead_id=session.lead_id, open_until=open_until)


def location_of(rt: Runtime, session: ChatSession) -> Location:
    return rt.config.location(session.location_id) or rt.config.locations[0]
