"""Book a time: the slots a customer may ask for (inside the location's opening hours over the
next days), the request, and staff confirming it."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from leadd.config import Location, StaffUser
from leadd.conversations.replies import POSTS_PER_MINUTE, RateLimited
from leadd.conversations.thread import actor
from leadd.logs import get_logger
from leadd.runtime import Runtime
from leadd.store.chat_models import Advance, ChatSession

log = get_logger(__name__)

SLOT_MINUTES = 60
BOOKING_DAYS = 7  # today and the next six days
LEAD_TIME = dt.timedelta(hours=2)  # the shop needs this much notice


class UnknownSlot(ValueError):
    """A slot that is not (or no longer) offered."""


@dataclass(frozen=True)
class Slot:
    start: dt.datetime  # UTC
    end: dt.datetime
    day: str  # "Tuesday, March 3" on the location's calendar
    time: str  # "9:00 AM"

    @property
    def value(self) -> str:
        """The form value naming this slot."""
        return self.start.strftime("%Y-%m-%dT%H:%MZ")


def slots(location: Location, now: dt.datetime, days: int = BOOKING_DAYS) -> list[Slot]:
    """Every SLOT_MINUTES slot that fits inside a shift of the location's posted hours, from
    LEAD_TIME after `now` through the next `days` days, on the location's wall clock. A slot
    whose local time does not exist (the DST spring-forward hour) is left out."""
    zone = ZoneInfo(location.timezone)
    earliest = now + LEAD_TIME
    today = now.astimezone(zone).date()
    out = []
    for offset in range(days):
        day = today + dt.timedelta(days=offset)
        for open_minute, close_minute in location.hours.get(day.weekday(), ()):
            if close_minute <= open_minute:
                close_minute += 24 * 60  # an overnight shift
            minute = open_minute
            while minute + SLOT_MINUTES <= close_minute:
                start = _wall(day, minute, zone)
                if start is not None and start >= earliest:
                    out.append(_slot(start, zone))
                minute += SLOT_MINUTES
    return out


def _wall(day: dt.date, minute: int, zone: ZoneInfo) -> dt.datetime | None:
    day += dt.timedelta(days=minute // (24 * 60))
    minute %= 24 * 60
    local = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), tzinfo=zone)
    utc = local.astimezone(dt.UTC)
    if utc.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None  # inside a DST gap
    return utc


def _slot(start: dt.datetime, zone: ZoneInfo) -> Slot:
    local = start.astimezone(zone)
    return Slot(
        start=start,
        end=start + dt.timedelta(minutes=SLOT_MINUTES),
        day=f"{local:%A, %B} {local.day}",
        time=clock_text(local),
    )


def clock_text(local: dt.datetime) -> str:
    return f"{local.hour % 12 or 12}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}"


def find_slot(location: Location, now: dt.datetime, value: str) -> Slot:
    """The offered slot a form value names; UnknownSlot if it is not offered now."""
    for slot in slots(location, now):
        if slot.value == value:
            return slot
    raise UnknownSlot(value)


async def request_appointment(rt: Runtime, session: ChatSession, value: str) -> int:
    """The customer asks for a slot: stored on the lead (replacing an earlier unconfirmed one),
    the lead moves to qualified and its automated sequence stops. Raises UnknownSlot or
    RateLimited (nothing stored)."""
    location = rt.config.location(session.location_id) or rt.config.locations[0]
    now = rt.clock()
    slot = find_slot(location, now, value)
    request_id = await rt.store.request_appointment(
        lead_id=session.lead_id,
        location_id=location.id,
        slot_start=slot.start,
        slot_end=slot.end,
        now=now,
        rate_window_start=now - dt.timedelta(minutes=1),
        rate_limit=POSTS_PER_MINUTE,
    )
    if request_id is None:
        raise RateLimited
    await rt.store.touch_seen(lead_id=session.lead_id, at=now)
    log.info("chat.appointment_requested", lead_id=str(session.lead_id), request_id=request_id)
    return request_id


async def confirm_appointment(
    rt: Runtime, user: StaffUser, lead_id: uuid.UUID, request_id: int
) -> Advance | None:
    """Staff confirm a requested time: the lead moves to appointment_set (the actor recorded).
    None when no such request is waiting (the caller has checked the person may see the
    lead)."""
    result = await rt.store.confirm_appointment(
        lead_id=lead_id, request_id=request_id, actor=actor(user.email), now=rt.clock()
    )
    if result is not None:
        log.info("chat.appointment_confirmed", lead_id=str(lead_id), request_id=request_id)
    return result
