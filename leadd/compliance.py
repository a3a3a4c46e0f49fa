"""When a message may go out: quiet hours by place, business hours (keywords and the cap:
consent.py). Everything here is a function of its arguments (no clock, no I/O), so callers pass `now`
and tests pin exact instants. Times are evaluated on the recipient's (or the location's)
wall clock through `zoneinfo`, which is what the laws and the posted business hours mean;
conversions back to UTC go through `_wall_to_utc` so DST gaps and repeats are exact.
Sources for the numbers: /work/shared/reference/compliance.md §1–§3.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from typing import TypeAlias
from zoneinfo import ZoneInfo

Window: TypeAlias = tuple[int, int]
"""Minutes from local midnight, [start, end). end == 1440 is midnight; end <= start
crosses midnight (only business hours may do that)."""

Week: TypeAlias = tuple[Window | None, ...]
"""A window per weekday, Monday first; None: no sending that day."""

Place: TypeAlias = tuple[str, str | None]
"""Somewhere a recipient may be: an IANA zone, and the US state whose law applies (or None).
`phones.places_of` says which places a number may be in."""

MINUTES_PER_DAY = 24 * 60
# No search for an opening looks further: a week covers every weekday, the second week
# covers a weekday whose window does not exist on a DST day.
MAX_SEARCH_DAYS = 14
# Distinct place sets are one per area code plus one per location for unknown numbers.
_PLAN_CACHE_SIZE = 4096
_ONE_DAY = timedelta(days=1)
_ONE_SECOND = timedelta(seconds=1)

_WINDOW_RE = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")
_WINDOW_FORMAT = '"HH:MM-HH:MM"'

_MON_TO_FRI = range(0, 5)
_SAT_SUN = (5, 6)
_EVERY_DAY = range(7)


def _every_day(window: Window) -> Mapping[int, Window | None]:
    return {day: window for day in _EVERY_DAY}


# compliance.md §2 "State mini-TCPA laws": recipient-local sending hours per state. The
# engine default (9:00-20:00, below) already covers the 8:00-20:00 states and CT; they are
# listed so that a tenant who widens the default to the federal 8:00-21:00 stays legal.
DEFAULT_STATE_RULES: Mapping[str, Mapping[int, Window | None]] = MappingProxyType(
    {
        # Texas SB 140 (from 2025-09-01): Mon-Sat 9am-9pm, Sunday noon-9pm.
        "TX": {**{day: (9 * 60, 21 * 60) for day in range(6)}, 6: (12 * 60, 21 * 60)},
        # Rhode Island: 9am-6pm weekdays, 10am-5pm weekends.
        "RI": {
            **{day: (9 * 60, 18 * 60) for day in _MON_TO_FRI},
            **{day: (10 * 60, 17 * 60) for day in _SAT_SUN},
        },
        # FTSA (FL), OTSA (OK), Stop the Spam Calls Act (MD), NJ and MS: 8am-8pm.
        "FL": _every_day((8 * 60, 20 * 60)),
        "OK": _every_day((8 * 60, 20 * 60)),
        "MD": _every_day((8 * 60, 20 * 60)),
        "NJ": _every_day((8 * 60, 20 * 60)),
        "MS": _every_day((8 * 60, 20 * 60)),
        # Connecticut (from 2023-10-01): 9am-8pm.
        "CT": _every_day((9 * 60, 20 * 60)),
    }
)


def parse_window(text: str) -> Window:
    """Parse "HH:MM-HH:MM" into minutes from midnight.

    "24:00" is accepted as an end; an end at or before the start is an overnight window
    ("22:00-02:00"). A window with equal ends is rejected as a likely typo: "00:00-24:00"
    says "all day" without ambiguity. The message is meant to follow a config key path.
    """
    match = _WINDOW_RE.fullmatch(text)
    if match is None:
        raise ValueError(f'expected {_WINDOW_FORMAT}, got "{text}"')
    start_h, start_m, end_h, end_m = (int(group) for group in match.groups())
    if start_h > 23 or start_m > 59 or end_m > 59 or end_h > 24 or (end_h == 24 and end_m):
        raise ValueError(
            f'expected {_WINDOW_FORMAT} with hours 00-23 (end may be 24:00), got "{text}"'
        )
    start, end = start_h * 60 + start_m, end_h * 60 + end_m
    if start == end:
        raise ValueError(
            f"expected {_WINDOW_FORMAT} with different start and end "
            f'(use "00:00-24:00" for all day), got "{text}"'
        )
    return (start, end)


class QuietHours:
    """Recipient-local sending windows: a default for everyone, narrowed by state law.

    The window on a given day is the intersection of `default` and the state's rule for
    that weekday, so a state can only make sending stricter. A state rule of None for a
    weekday means no sending that day; a weekday missing from a state's rules means the
    state adds nothing that day. `state_rules=None` uses `DEFAULT_STATE_RULES`; pass `{}`
    to apply the default alone.

    A recipient is given as the places they may be in (`Place`: zone and state): a send is
    allowed only when it is allowed in every one, so a number that spans zones gets the
    narrowest window of its zones and an unknown one the strictest of every state's rules,
    each in its own zones.
    """

    def __init__(
        self,
        default: Window = (9 * 60, 20 * 60),
        state_rules: Mapping[str, Mapping[int, Window | None]] | None = None,
    ) -> None:
        _check_same_day(default, "default")
        rules = DEFAULT_STATE_RULES if state_rules is None else state_rules
        self._default = default
        self._by_state: dict[str, Week] = {}
        self._plans: dict[frozenset[Place], tuple[tuple[ZoneInfo, Week], ...]] = {}
        for state, days in rules.items():
            key = state.upper()
            unknown = set(days) - set(_EVERY_DAY)
            if unknown:
                raise ValueError(f"{key}: weekdays are 0 (Mon) to 6 (Sun), got {sorted(unknown)}")
            effective: list[Window | None] = []
            for weekday in _EVERY_DAY:
                rule = days.get(weekday, default)
                if rule is not None:
                    _check_same_day(rule, f"{key}[{weekday}]")
                effective.append(None if rule is None else _intersect(default, rule))
            if all(window is None for window in effective):
                # next_allowed must always find an opening; say so here, not at send time.
                raise ValueError(f"{key}: no day of the week leaves a sending window")
            self._by_state[key] = tuple(effective)

    def window_for(self, weekday: int, state: str | None) -> Window | None:
        """The effective window on `weekday` (0=Mon) for recipients in `state`."""
        if state is None:
            return self._default
        days = self._by_state.get(state.upper())
        return self._default if days is None else days[weekday]

    def allowed(self, now_utc: datetime, places: Iterable[Place]) -> bool:
        """Whether a message may be sent at `now_utc` to someone who may be in any of `places`.

        It must be allowed in every one of them: a number that spans zones gets the narrowest
        window of its zones, a number whose state is unknown the strictest of its states.
        """
        now = _as_utc(now_utc)
        return all(_allowed_in(zone, week, now) for zone, week in self._plan(places))

    def next_allowed(self, now_utc: datetime, places: Iterable[Place]) -> datetime:
        """`now_utc` (in UTC) if allowed, else the first minute allowed in every one of `places`.

        Openings are found on each zone's local calendar and converted with zoneinfo, so a
        9:00 opening is 9:00 local on both sides of a DST change; an opening inside a
        spring-forward gap moves to the end of the gap; the hour a fall-back repeats is judged
        by its wall clock, as `allowed` does. Across zones the search leapfrogs: it moves to
        the first instant one zone allows, until every zone allows the same instant.

        Zones far apart may share no minute at all (a custom window narrower than the spread
        of the US range, say). Then nothing is allowed within `MAX_SEARCH_DAYS`, and that
        horizon is returned: not an allowed instant, but a time to look again (the send gate
        re-checks every instant it is given), so such a message waits instead of going out.
        """
        now = _as_utc(now_utc)
        plan = self._plan(places)
        limit = now + timedelta(days=MAX_SEARCH_DAYS)
        candidate, agreed, index = now, 0, 0
        while agreed < len(plan):
            zone, week = plan[index % len(plan)]
            index += 1
            opening = _next_in(zone, week, candidate, limit)
            if opening is None:
                return limit
            if opening == candidate:
                agreed += 1
            else:  # later than every instant checked so far: the others must agree on it
                candidate, agreed = opening, 1
        return candidate

    def _plan(self, places: Iterable[Place]) -> tuple[tuple[ZoneInfo, Week], ...]:
        """One weekly window per distinct zone: the intersection of the states' windows there.

        Cached: the same few sets (one per area code, the US range) come back on every send.
        """
        key = frozenset(places)
        plan = self._plans.get(key)
        if plan is None:
            if not key:
                raise ValueError("quiet hours need at least one place the recipient may be in")
            by_zone: dict[str, list[str | None]] = {}
            for tz, state in key:
                by_zone.setdefault(tz, []).append(state)
            plan = tuple(
                (ZoneInfo(tz), self._week(states)) for tz, states in sorted(by_zone.items())
            )
            if len(self._plans) >= _PLAN_CACHE_SIZE:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def _week(self, states: Iterable[str | None]) -> Week:
        week: list[Window | None] = []
        for weekday in _EVERY_DAY:
            window: Window | None = self._default
            for state in states:
                rule = self.window_for(weekday, state)
                window = None if window is None or rule is None else _intersect(window, rule)
            week.append(window)
        return tuple(week)


class BusinessHours:
    """A location's opening hours: per weekday (0=Mon) a list of shifts, each a `Window`.

    A weekday that is missing or empty is closed. A shift whose end is at or before its
    start runs past midnight into the next day ("22:00-02:00" on Friday covers Saturday
    until 2:00). Evaluated on the location's wall clock.
    """

    def __init__(self, shifts: Mapping[int, Sequence[Window]]) -> None:
        unknown = set(shifts) - set(_EVERY_DAY)
        if unknown:
            raise ValueError(f"weekdays are 0 (Mon) to 6 (Sun), got {sorted(unknown)}")
        self._shifts: tuple[tuple[Window, ...], ...] = tuple(
            tuple(sorted(shifts.get(weekday, ()))) for weekday in _EVERY_DAY
        )
        for weekday, day_shifts in enumerate(self._shifts):
            for shift in day_shifts:
                _check_window(shift, f"weekday {weekday}")

    def is_open(self, now_utc: datetime, tz: str) -> bool:
        """Whether the location is open at `now_utc`, counting yesterday's overnight shifts."""
        local = _to_local(now_utc, tz)
        minute = local.hour * 60 + local.minute
        weekday = local.weekday()
        for start, end in self._shifts[weekday]:
            if start < end and start <= minute < end:
                return True
            if end <= start and minute >= start:
                return True
        yesterday = (weekday - 1) % 7
        return any(end <= start and minute < end for start, end in self._shifts[yesterday])

    def next_open(self, now_utc: datetime, tz: str) -> datetime | None:
        """`now_utc` if open, else when the next shift starts (UTC); None if never open."""
        if self.is_open(now_utc, tz):
            return now_utc.astimezone(UTC)
        if not any(self._shifts):
            return None
        zone = ZoneInfo(tz)
        today = now_utc.astimezone(zone).date()
        for offset in range(8):  # every weekday, plus today's weekday again next week
            day = today + timedelta(days=offset)
            for start, _ in self._shifts[day.weekday()]:
                opening = _wall_to_utc(day, start, zone)
                if opening > now_utc:
                    return opening
        raise RuntimeError("a weekly schedule with shifts must reopen within 8 days")

    def describe_day(self, now_utc: datetime, tz: str) -> str:
        """Today's posted hours on the location's calendar, for message templates.

        "8:00 AM–6:00 PM", "8:00 AM–12:00 PM, 1:00 PM–5:00 PM" or "closed". Only shifts
        that start today are listed, as a sign on the door would.
        """
        shifts = self._shifts[_to_local(now_utc, tz).weekday()]
        if not shifts:
            return "closed"
        return ", ".join(f"{_clock(start)}–{_clock(end)}" for start, end in shifts)


def _check_window(window: Window, where: str) -> None:
    start, end = window
    if not (0 <= start < MINUTES_PER_DAY and 0 <= end <= MINUTES_PER_DAY):
        raise ValueError(f"{where}: window {window} is outside 0..1440 minutes")
    if start == end:
        raise ValueError(f"{where}: window {window} has equal start and end")


def _check_same_day(window: Window, where: str) -> None:
    _check_window(window, where)
    if window[1] <= window[0]:
        raise ValueError(f"{where}: sending windows cannot cross midnight, got {window}")


def _intersect(a: Window, b: Window) -> Window | None:
    start, end = max(a[0], b[0]), min(a[1], b[1])
    return (start, end) if start < end else None


def _as_utc(now_utc: datetime) -> datetime:
    if now_utc.tzinfo is None:
        # A naive time would silently be read as the host's zone.
        raise ValueError("now_utc must be timezone-aware")
    return now_utc.astimezone(UTC)


def _allowed_in(zone: ZoneInfo, week: Week, now: datetime) -> bool:
    local = now.astimezone(zone)
    window = week[local.weekday()]
    if window is None:
        return False
    minute = local.hour * 60 + local.minute
    return window[0] <= minute < window[1]


def _next_in(zone: ZoneInfo, week: Week, now: datetime, limit: datetime) -> datetime | None:
    """The first instant at or after `now` and before `limit` that `week` allows in `zone`.

    Sending becomes allowed only where the wall clock enters a window: at the window's start
    (either occurrence, when a fall-back repeats it) or at a UTC-offset change (a jump into
    the window). So each local day offers at most three candidates, checked in order.
    """
    if _allowed_in(zone, week, now):
        return now
    day = now.astimezone(zone).date()
    day_start = _wall_to_utc(day, 0, zone)
    while day_start < limit:
        next_start = _wall_to_utc(day + _ONE_DAY, 0, zone)
        window = week[day.weekday()]
        if window is not None:
            for entry in _entries(day, window[0], zone, day_start, next_start):
                if entry >= limit:
                    return None
                if entry > now and _allowed_in(zone, week, entry):
                    return entry
        day, day_start = day + _ONE_DAY, next_start
    return None


def _entries(
    day: date, start: int, zone: ZoneInfo, day_start: datetime, day_end: datetime
) -> list[datetime]:
    """Where the wall clock may enter a window opening at `start` on local `day`, sorted.

    `day_start`/`day_end` are the UTC bounds of the local day; every candidate lies within.
    """
    first = _wall_to_utc(day, start, zone)
    entries = {first}
    wall = datetime.combine(day, time()) + timedelta(minutes=start)
    repeat = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if repeat.astimezone(zone).replace(tzinfo=None) == wall:
        entries.add(repeat)  # the same as `first` unless the wall time happens twice
    last = day_end - _ONE_SECOND
    if day_start.astimezone(zone).utcoffset() != last.astimezone(zone).utcoffset():
        entries.add(_offset_change(day_start, last, zone))
    return sorted(entries)


def _offset_change(low_utc: datetime, high_utc: datetime, zone: ZoneInfo) -> datetime:
    """The first second in [low, high] with `high`'s UTC offset (one change in between)."""
    target = high_utc.astimezone(zone).utcoffset()
    low, high = int(low_utc.timestamp()), int(high_utc.timestamp())
    while low < high:
        mid = (low + high) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == target:
            high = mid
        else:
            low = mid + 1
    return datetime.fromtimestamp(low, UTC)


def _to_local(now_utc: datetime, tz: str) -> datetime:
    return _as_utc(now_utc).astimezone(ZoneInfo(tz))


def _wall_to_utc(day: date, minute: int, zone: ZoneInfo) -> datetime:
    """The first UTC instant at which the wall clock in `zone` reads `day` + `minute` or later.

    A repeated wall time (fall back) takes its first occurrence; a skipped one (spring
    forward) takes the transition instant, when the clock jumps past it.
    """
    wall = datetime.combine(day, time()) + timedelta(minutes=minute)
    early = wall.replace(tzinfo=zone).astimezone(UTC)
    if early.astimezone(zone).replace(tzinfo=None) == wall:
        return early
    # In a gap, fold=0 applies the pre-transition offset and fold=1 the post-transition
    # one; the transition lies between them and the wall clock rises monotonically there.
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = int(early.timestamp())
    low, high = min(low, high), max(low, high)
    while low < high:
        mid = (low + high) // 2
        if datetime.fromtimestamp(mid, zone).replace(tzinfo=None) >= wall:
            high = mid
        else:
            low = mid + 1
    return datetime.fromtimestamp(low, UTC)


def _clock(minute: int) -> str:
    hour, mins = divmod(minute % MINUTES_PER_DAY, 60)
    suffix = "AM" if hour < 12 else "PM"
    return f"{hour % 12 or 12}:{mins:02d} {suffix}"
