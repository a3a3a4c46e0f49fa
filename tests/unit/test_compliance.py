"""Quiet hours, business hours, keywords and frequency caps, at pinned instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from leadd import phones
from leadd.compliance import (
    DEFAULT_STATE_RULES,
    MAX_SEARCH_DAYS,
    MINUTES_PER_DAY,
    BusinessHours,
    QuietHours,
    parse_window,
)
from leadd.consent import (
    HELP_KEYWORDS,
    OPT_IN_KEYWORDS,
    OPT_OUT_KEYWORDS,
    classify_keyword,
    next_slot_under_cap,
    within_cap,
)
from leadd.conversations import inbound
from tests.conftest import make_config

CHICAGO = "America/Chicago"
NEW_YORK = "America/New_York"


def local(tz: str, year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """An instant given by its wall time in `tz`, expressed in UTC like callers pass it."""
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# parse_window


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("09:00-17:30", (540, 1050)),
        ("9:00-17:00", (540, 1020)),
        (" 08:00 - 24:00 ", (480, 1440)),
        ("00:00-24:00", (0, 1440)),
        ("22:00-02:00", (1320, 120)),
        ("18:00-00:00", (1080, 0)),
    ],
)
def test_parse_window(text: str, window: tuple[int, int]) -> None:
    assert parse_window(text) == window


@pytest.mark.parametrize(
    "text",
    ["9-5", "", "09:00", "09:00-17", "9am-5pm", "25:00-26:00", "09:60-10:00", "09:00-24:30"],
)
def test_parse_window_errors_name_the_format_and_input(text: str) -> None:
    with pytest.raises(ValueError, match='expected "HH:MM-HH:MM"') as info:
        parse_window(text)
    assert f'got "{text}"' in str(info.value)


@pytest.mark.parametrize("text", ["09:00-09:00", "00:00-00:00", "24:00-05:00"])
def test_parse_window_rejects_empty_or_24h_start(text: str) -> None:
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        parse_window(text)


# QuietHours


def test_late_evening_defers_to_next_morning() -> None:
    quiet = QuietHours()
    now = local(CHICAGO, 2026, 6, 10, 22, 30)
    assert not quiet.allowed(now, [(CHICAGO, None)])
    assert quiet.next_allowed(now, [(CHICAGO, None)]) == local(CHICAGO, 2026, 6, 11, 9, 0)


def test_one_minute_before_opening_waits_for_opening() -> None:
    quiet = QuietHours()
    now = local(CHICAGO, 2026, 6, 10, 8, 59)
    assert not quiet.allowed(now, [(CHICAGO, None)])
    opening = quiet.next_allowed(now, [(CHICAGO, None)])
    assert opening == local(CHICAGO, 2026, 6, 10, 9, 0)
    assert opening.tzinfo is UTC


def test_inside_window_sends_now() -> None:
    quiet = QuietHours()
    now = local(CHICAGO, 2026, 6, 10, 10, 0)
    assert quiet.allowed(now, [(CHICAGO, None)])
    assert quiet.next_allowed(now, [(CHICAGO, None)]) == now


def test_window_end_is_exclusive() -> None:
    quiet = QuietHours()
    assert quiet.allowed(local(CHICAGO, 2026, 6, 10, 19, 59), [(CHICAGO, None)])
    assert not quiet.allowed(local(CHICAGO, 2026, 6, 10, 20, 0), [(CHICAGO, None)])


def test_texas_sunday_starts_at_noon() -> None:
    quiet = QuietHours()
    sunday_ten = local(CHICAGO, 2026, 6, 14, 10, 0)
    assert not quiet.allowed(sunday_ten, [(CHICAGO, "TX")])
    assert quiet.next_allowed(sunday_ten, [(CHICAGO, "TX")]) == local(CHICAGO, 2026, 6, 14, 12, 0)
    # Without the state rule the same instant is fine, and on Saturday Texas is too.
    assert quiet.allowed(sunday_ten, [(CHICAGO, None)])
    assert quiet.allowed(local(CHICAGO, 2026, 6, 13, 10, 0), [(CHICAGO, "TX")])


def test_rhode_island_saturday_evening_waits_for_sunday_ten() -> None:
    quiet = QuietHours()
    now = local(NEW_YORK, 2026, 6, 13, 17, 30)
    assert not quiet.allowed(now, [(NEW_YORK, "RI")])
    assert quiet.next_allowed(now, [(NEW_YORK, "RI")]) == local(NEW_YORK, 2026, 6, 14, 10, 0)


def test_state_code_is_case_insensitive() -> None:
    quiet = QuietHours()
    sunday_ten = local(CHICAGO, 2026, 6, 14, 10, 0)
    assert not quiet.allowed(sunday_ten, [(CHICAGO, "tx")])


def test_state_rule_narrows_a_wider_default() -> None:
    """With the federal 8-21 default, Florida's 8-20 rule still stops the 20:30 send."""
    quiet = QuietHours(default=(8 * 60, 21 * 60))
    assert quiet.allowed(local(NEW_YORK, 2026, 6, 10, 20, 30), [(NEW_YORK, None)])
    assert not quiet.allowed(local(NEW_YORK, 2026, 6, 10, 20, 30), [(NEW_YORK, "FL")])
    assert quiet.allowed(local(NEW_YORK, 2026, 6, 10, 8, 30), [(NEW_YORK, "FL")])
    # The default 9:00 start wins over Florida's 8:00 when the default is narrower.
    assert not QuietHours().allowed(local(NEW_YORK, 2026, 6, 10, 8, 30), [(NEW_YORK, "FL")])


def test_default_state_rules_cover_the_documented_states() -> None:
    assert set(DEFAULT_STATE_RULES) == {"TX", "RI", "FL", "OK", "MD", "NJ", "MS", "CT"}
    assert DEFAULT_STATE_RULES["TX"][6] == (720, 1260)
    assert DEFAULT_STATE_RULES["RI"][5] == (600, 1020)


def test_day_without_window_is_skipped() -> None:
    quiet = QuietHours(state_rules={"ZZ": {6: None}})
    saturday_night = local(CHICAGO, 2026, 6, 13, 21, 0)
    assert quiet.next_allowed(saturday_night, [(CHICAGO, "ZZ")]) == local(CHICAGO, 2026, 6, 15, 9)
    assert not quiet.allowed(local(CHICAGO, 2026, 6, 14, 12, 0), [(CHICAGO, "ZZ")])


def test_spring_forward_opening_is_nine_local_daylight_time() -> None:
    """On 2026-03-08 Chicago moves from UTC-6 to UTC-5: 09:00 is 14:00Z, not 15:00Z."""
    quiet = QuietHours()
    saturday_night = local(CHICAGO, 2026, 3, 7, 21, 0)
    assert quiet.next_allowed(saturday_night, [(CHICAGO, None)]) == utc(2026, 3, 8, 14, 0)


def test_fall_back_opening_is_nine_local_standard_time() -> None:
    """On 2026-11-01 Chicago moves from UTC-5 to UTC-6: 09:00 is 15:00Z, not 14:00Z."""
    quiet = QuietHours()
    saturday_night = local(CHICAGO, 2026, 10, 31, 21, 0)
    assert quiet.next_allowed(saturday_night, [(CHICAGO, None)]) == utc(2026, 11, 1, 15, 0)


def test_opening_inside_spring_forward_gap_moves_to_end_of_gap() -> None:
    """02:30 does not exist on 2026-03-08 in New York; the clock jumps 02:00 -> 03:00."""
    quiet = QuietHours(default=(2 * 60 + 30, 10 * 60), state_rules={})
    now = local(NEW_YORK, 2026, 3, 8, 1, 0)
    assert quiet.next_allowed(now, [(NEW_YORK, None)]) == utc(2026, 3, 8, 7, 0)  # 03:00 EDT


def test_opening_at_repeated_wall_time_takes_first_occurrence() -> None:
    """01:30 happens twice on 2026-11-01 in New York; the first one is 05:30Z (EDT)."""
    quiet = QuietHours(default=(90, 10 * 60), state_rules={})
    now = utc(2026, 11, 1, 4, 30)  # 00:30 EDT
    assert quiet.next_allowed(now, [(NEW_YORK, None)]) == utc(2026, 11, 1, 5, 30)


def test_naive_datetime_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        QuietHours().allowed(datetime(2026, 6, 10, 10, 0), [(CHICAGO, None)])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"default": (22 * 60, 2 * 60)}, "cannot cross midnight"),
        ({"state_rules": {"ZZ": dict.fromkeys(range(7))}}, "no day of the week"),
        ({"state_rules": {"ZZ": {7: (540, 600)}}}, "weekdays are 0"),
        ({"default": (0, 1500)}, "outside"),
        ({"state_rules": {"ZZ": {0: (22 * 60, 1 * 60)}}}, "cannot cross midnight"),
    ],
)
def test_quiet_hours_rejects_bad_configuration(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QuietHours(**kwargs)  # type: ignore[arg-type]


# QuietHours across zones: a number that may be in several places (issue 7, defect 6)

PACIFIC = "America/Los_Angeles"
DENVER = "America/Denver"
PHOENIX = "America/Phoenix"
LONDON = "Europe/London"
HONOLULU = "Pacific/Honolulu"
SOUTH_DAKOTA = "+16055551234"  # Mountain and Central (North Dakota/Center)
IDAHO = "+12085551234"  # Mountain (Boise) and Pacific
UK_MOBILE = "+447911123456"  # London and the Crown Dependencies
TOLL_FREE = "+18005550123"  # nowhere in particular: the shop's zone and the whole US range
NAVAJO_NATION = "+19286745678"  # Arizona 928-674 (Chinle): Phoenix (no DST) and Denver


@pytest.mark.parametrize(
    ("e164", "opening"),
    [
        # 21:30 in Central, 20:30 in Mountain: both closed until 9:00 Mountain (10:00 Central).
        (SOUTH_DAKOTA, local(DENVER, 2026, 6, 11, 9, 0)),
        # 20:30 in Boise: closed until 9:00 Pacific, when Boise is at 10:00.
        (IDAHO, local(PACIFIC, 2026, 6, 11, 9, 0)),
        # 03:30 in London.
        (UK_MOBILE, local(LONDON, 2026, 6, 11, 9, 0)),
        # 22:30 in New York, 16:30 in Honolulu: the next minute open everywhere in the US is
        # 9:00 in Honolulu (15:00 in New York, still inside Rhode Island's 9:00-18:00).
        (TOLL_FREE, local(HONOLULU, 2026, 6, 11, 9, 0)),
    ],
)
def test_evening_in_the_shop_is_night_where_the_number_may_be(e164: str, opening: datetime) -> None:
    """The reproduction: at 19:30 Pacific these numbers were texted in the shop's window."""
    quiet = QuietHours()
    evening = local(PACIFIC, 2026, 6, 10, 19, 30)
    places = phones.places_of(e164, PACIFIC)
    assert quiet.allowed(evening, [(PACIFIC, None)])  # the shop's own window is open
    assert not quiet.allowed(evening, places)
    assert quiet.next_allowed(evening, places) == opening
    assert quiet.allowed(opening, places)
    assert not quiet.allowed(opening - timedelta(minutes=1), places)


def test_window_across_zones_closes_with_the_earliest_zone() -> None:
    """Idaho at 19:30 Pacific is 20:30 in Boise: the Mountain evening closes the window."""
    quiet = QuietHours()
    places = phones.places_of(IDAHO, PACIFIC)
    assert quiet.allowed(local(PACIFIC, 2026, 6, 10, 18, 59), places)
    assert not quiet.allowed(local(PACIFIC, 2026, 6, 10, 19, 0), places)


def test_unknown_number_on_sunday_gets_every_state_rule_in_its_own_zones() -> None:
    """Rhode Island's weekend 10:00-17:00 in New York time and Texas' Sunday noon in Central
    time both hold for a number that may be anywhere; Honolulu's 9:00 opens last."""
    quiet = QuietHours()
    places = phones.places_of(TOLL_FREE, PACIFIC)
    sunday_morning = local(CHICAGO, 2026, 6, 14, 11, 0)
    opening = quiet.next_allowed(sunday_morning, places)
    assert opening == utc(2026, 6, 14, 19, 0)  # 9:00 Honolulu, 14:00 Chicago, 15:00 New York
    assert quiet.allowed(local(NEW_YORK, 2026, 6, 14, 16, 59), places)
    assert not quiet.allowed(local(NEW_YORK, 2026, 6, 14, 17, 0), places)  # Rhode Island
    # Texas' rule applies in Texas' zones only: at 11:00 Central on Sunday a Chicago number
    # without a state may be texted, a Texan one may not.
    assert quiet.allowed(sunday_morning, [(CHICAGO, "IL")])
    assert not quiet.allowed(sunday_morning, [(CHICAGO, "TX")])


def test_unknown_number_saturday_evening_in_honolulu_waits_for_sunday() -> None:
    """17:30 Saturday in Honolulu is 23:30 Sunday in New York: the calendars differ, and the
    answer is Sunday's shared window, not Saturday's."""
    quiet = QuietHours()
    places = phones.places_of(TOLL_FREE, PACIFIC)
    now = local(HONOLULU, 2026, 6, 13, 17, 30)
    assert quiet.next_allowed(now, places) == local(HONOLULU, 2026, 6, 14, 9, 0)


def test_state_unknown_and_ambiguous_gets_the_strictest_candidate_state() -> None:
    """Two candidate states in one zone: both rules hold (Florida's 8:00-20:00 and a made-up
    rule that closes Mondays)."""
    quiet = QuietHours(
        default=(7 * 60, 21 * 60), state_rules={**DEFAULT_STATE_RULES, "ZZ": {0: None}}
    )
    places = [(NEW_YORK, "FL"), (NEW_YORK, "ZZ")]
    monday_evening = local(NEW_YORK, 2026, 6, 8, 20, 30)
    assert not quiet.allowed(monday_evening, places)
    assert quiet.next_allowed(monday_evening, places) == local(NEW_YORK, 2026, 6, 9, 8, 0)


@pytest.mark.parametrize(
    ("now", "opening"),
    [
        # Friday evening before the change: Denver and Phoenix both on MST.
        (local(PHOENIX, 2026, 3, 6, 21, 0), local(PHOENIX, 2026, 3, 7, 9, 0)),
        # Saturday night across the spring-forward: Denver is on MDT on Sunday morning, an
        # hour ahead of Phoenix, so Phoenix's 9:00 opens last.
        (local(PHOENIX, 2026, 3, 7, 21, 0), utc(2026, 3, 8, 16, 0)),
        # Saturday night across the fall-back: both on MST again, 9:00 is 16:00Z.
        (local(PHOENIX, 2026, 10, 31, 21, 0), utc(2026, 11, 1, 16, 0)),
        # Summer evening: 19:30 in Phoenix is 20:30 in Denver, closed.
        (local(PHOENIX, 2026, 7, 1, 19, 30), local(PHOENIX, 2026, 7, 2, 9, 0)),
    ],
)
def test_zones_with_different_dst_rules(now: datetime, opening: datetime) -> None:
    places = phones.places_of(NAVAJO_NATION, PACIFIC)
    assert {zone for zone, _ in places} == {PHOENIX, DENVER}
    assert QuietHours().next_allowed(now, places) == opening


def test_fall_back_repeated_hour_reopens_a_window_ending_inside_it() -> None:
    """On 2026-11-01 New York's wall clock reads 01:00-01:59 twice. A 00:00-01:30 window
    closes at 01:30 EDT and opens again at 01:00 EST, as `allowed` reads the wall clock."""
    quiet = QuietHours(default=(0, 90), state_rules={})
    places = [(NEW_YORK, None)]
    after_first_pass = utc(2026, 11, 1, 5, 45)  # 01:45 EDT
    assert not quiet.allowed(after_first_pass, places)
    assert quiet.next_allowed(after_first_pass, places) == utc(2026, 11, 1, 6, 0)  # 01:00 EST
    assert quiet.allowed(utc(2026, 11, 1, 6, 0), places)


def test_window_inside_a_spring_forward_gap_is_skipped_that_day() -> None:
    """02:10-02:40 never shows on New York's clock on 2026-03-08: the next opening is 02:10
    on Monday, not the 03:00 jump, which is outside the window."""
    quiet = QuietHours(default=(130, 160), state_rules={})
    now = local(NEW_YORK, 2026, 3, 8, 1, 0)
    assert quiet.next_allowed(now, [(NEW_YORK, None)]) == local(NEW_YORK, 2026, 3, 9, 2, 10)


def test_zones_that_never_share_a_minute_defer_to_the_horizon() -> None:
    """London's 10:00-16:00 and Honolulu's never overlap: the answer is the end of the search,
    a time to look again, never a time that is night in one of them."""
    quiet = QuietHours(default=(10 * 60, 16 * 60), state_rules={})
    places = [(LONDON, None), (HONOLULU, None)]
    now = utc(2026, 6, 10, 12, 0)
    answer = quiet.next_allowed(now, places)
    assert answer == now + timedelta(days=MAX_SEARCH_DAYS)
    assert not quiet.allowed(answer, places)


@pytest.mark.parametrize("location", [NEW_YORK, CHICAGO, PACIFIC, HONOLULU, "America/Toronto"])
def test_no_us_number_waits_more_than_a_day_under_the_default_rules(location: str) -> None:
    """Strict is not never: with the built-in window and state rules, every US area code and a
    number that may be anywhere in the US find a window within a day, whatever the hour of
    any day of a summer and a winter week, from a shop anywhere in North America."""
    quiet = QuietHours()
    numbers = [f"+1{code}2345678" for code in phones.AREA_CODE_STATE] + [TOLL_FREE]
    starts = [utc(2026, 1, 5, 0, 0), utc(2026, 7, 6, 0, 0)]  # Mondays
    for number in numbers:
        places = phones.places_of(number, location)
        for start in starts:
            for hours in range(0, 7 * 24, 5):
                now = start + timedelta(hours=hours)
                assert quiet.next_allowed(now, places) - now < timedelta(days=1), (number, now)


def test_next_allowed_needs_a_place() -> None:
    with pytest.raises(ValueError, match="at least one place"):
        QuietHours().next_allowed(utc(2026, 6, 10, 12, 0), [])


# Property: whatever the zones, windows and instant, the answer is the first allowed minute.

_ZONES = [
    NEW_YORK,
    CHICAGO,
    DENVER,
    PHOENIX,
    PACIFIC,
    HONOLULU,
    "America/Adak",
    LONDON,
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Asia/Kathmandu",  # +05:45
    "Pacific/Chatham",  # +12:45/+13:45, across the date line from Honolulu
    "America/Santiago",  # southern-hemisphere DST, changing at midnight
    "Asia/Beirut",  # falls back from 00:00 to 23:00 the day before
]
_STATES = [None, *DEFAULT_STATE_RULES, "ZZ"]
_TRANSITIONS = [
    utc(2026, 3, 8, 8, 0),  # US spring forward
    utc(2026, 11, 1, 6, 0),  # US fall back
    utc(2026, 3, 29, 1, 0),  # EU spring forward
    utc(2026, 4, 4, 15, 0),  # Lord Howe, half an hour back
    utc(2026, 4, 5, 3, 0),  # Santiago, back at midnight
    utc(2026, 10, 24, 21, 0),  # Beirut, midnight back to 23:00
]


@st.composite
def _windows(draw: st.DrawFn) -> tuple[int, int]:
    start = draw(st.integers(0, MINUTES_PER_DAY - 1))
    return (start, draw(st.integers(start + 1, MINUTES_PER_DAY)))


_instants = st.one_of(
    st.datetimes(datetime(2024, 1, 1), datetime(2032, 12, 31), timezones=st.just(UTC)),
    st.builds(
        lambda at, hours, seconds: at + timedelta(hours=hours, seconds=seconds),
        st.sampled_from(_TRANSITIONS),
        st.integers(-72, 72),
        st.integers(0, 3599),
    ),
)


@given(
    now=_instants,
    default=_windows(),
    zz_day=st.integers(0, 6),
    zz_window=st.one_of(st.none(), _windows()),
    places=st.lists(
        st.tuples(st.sampled_from(_ZONES), st.sampled_from(_STATES)), min_size=1, max_size=4
    ),
)
@settings(max_examples=150, deadline=None)
def test_next_allowed_is_the_first_minute_allowed_everywhere(
    now: datetime,
    default: tuple[int, int],
    zz_day: int,
    zz_window: tuple[int, int] | None,
    places: list[tuple[str, str | None]],
) -> None:
    """The answer is allowed in every place, and no minute between now and it is; or, when
    none is within the horizon, the horizon itself."""
    try:
        quiet = QuietHours(default, {**DEFAULT_STATE_RULES, "ZZ": {zz_day: zz_window}})
    except ValueError:
        # A default that leaves a state no window on any day (01:00-02:00 against Texas'
        # 9:00-21:00): the config loader rejects it, so no send ever meets it.
        assume(False)
    where = frozenset(places)  # hashed once: the brute-force check below calls allowed a lot
    answer = quiet.next_allowed(now, where)
    horizon = now + timedelta(days=MAX_SEARCH_DAYS)
    assert now <= answer <= horizon
    assert (answer == now) == quiet.allowed(now, where)
    first = now.replace(second=0, microsecond=0)
    first += timedelta(minutes=0 if first == now else 1)
    minute = first
    while minute < answer:
        assert not quiet.allowed(minute, where), minute
        minute += timedelta(minutes=1)
    if answer < horizon:
        assert quiet.allowed(answer, where)
        assert answer == now or answer.second == answer.microsecond == 0
    else:
        assert not quiet.allowed(answer, where)


# BusinessHours

SPLIT_AND_OVERNIGHT = BusinessHours(
    {
        0: [(13 * 60, 17 * 60), (8 * 60, 12 * 60)],  # Monday, split shift (given unsorted)
        1: [(8 * 60, 18 * 60)],
        4: [(22 * 60, 2 * 60)],  # Friday night into Saturday
        5: [(10 * 60, 16 * 60)],
        6: [],
    }
)


def test_split_shift_lunch_break_is_closed() -> None:
    hours = SPLIT_AND_OVERNIGHT
    assert hours.is_open(local(CHICAGO, 2026, 6, 8, 11, 59), CHICAGO)
    lunch = local(CHICAGO, 2026, 6, 8, 12, 30)
    assert not hours.is_open(lunch, CHICAGO)
    assert hours.next_open(lunch, CHICAGO) == local(CHICAGO, 2026, 6, 8, 13, 0)
    assert hours.is_open(local(CHICAGO, 2026, 6, 8, 16, 59), CHICAGO)
    assert not hours.is_open(local(CHICAGO, 2026, 6, 8, 17, 0), CHICAGO)


def test_overnight_shift_spills_into_next_day() -> None:
    hours = SPLIT_AND_OVERNIGHT
    assert not hours.is_open(local(CHICAGO, 2026, 6, 12, 21, 59), CHICAGO)  # Friday
    assert hours.is_open(local(CHICAGO, 2026, 6, 12, 23, 0), CHICAGO)
    assert hours.is_open(local(CHICAGO, 2026, 6, 13, 1, 59), CHICAGO)  # Saturday
    after = local(CHICAGO, 2026, 6, 13, 2, 0)
    assert not hours.is_open(after, CHICAGO)
    assert hours.next_open(after, CHICAGO) == local(CHICAGO, 2026, 6, 13, 10, 0)


def test_next_open_skips_closed_days_and_returns_now_when_open() -> None:
    hours = SPLIT_AND_OVERNIGHT
    sunday = local(CHICAGO, 2026, 6, 14, 12, 0)
    assert not hours.is_open(sunday, CHICAGO)
    assert hours.next_open(sunday, CHICAGO) == local(CHICAGO, 2026, 6, 15, 8, 0)
    tuesday = local(CHICAGO, 2026, 6, 9, 9, 0)
    assert hours.next_open(tuesday, CHICAGO) == tuesday
    # Tuesday evening: closed Wednesday and Thursday, so Friday 22:00.
    assert hours.next_open(local(CHICAGO, 2026, 6, 9, 18, 0), CHICAGO) == local(
        CHICAGO, 2026, 6, 12, 22, 0
    )


def test_never_open_has_no_next_open() -> None:
    hours = BusinessHours({})
    now = local(CHICAGO, 2026, 6, 9, 9, 0)
    assert not hours.is_open(now, CHICAGO)
    assert hours.next_open(now, CHICAGO) is None
    assert hours.describe_day(now, CHICAGO) == "closed"


def test_describe_day() -> None:
    hours = SPLIT_AND_OVERNIGHT
    assert hours.describe_day(local(CHICAGO, 2026, 6, 8, 7, 0), CHICAGO) == (
        "8:00 AM–12:00 PM, 1:00 PM–5:00 PM"
    )
    assert hours.describe_day(local(CHICAGO, 2026, 6, 9, 7, 0), CHICAGO) == "8:00 AM–6:00 PM"
    assert hours.describe_day(local(CHICAGO, 2026, 6, 12, 7, 0), CHICAGO) == "10:00 PM–2:00 AM"
    assert hours.describe_day(local(CHICAGO, 2026, 6, 14, 7, 0), CHICAGO) == "closed"
    assert hours.describe_day(local(CHICAGO, 2026, 6, 10, 7, 0), CHICAGO) == "closed"


def test_describe_day_uses_location_calendar() -> None:
    """Monday 03:00Z is still Sunday evening in Chicago."""
    assert SPLIT_AND_OVERNIGHT.describe_day(utc(2026, 6, 15, 3, 0), CHICAGO) == "closed"
    assert SPLIT_AND_OVERNIGHT.describe_day(utc(2026, 6, 15, 3, 0), "UTC") != "closed"


def test_business_hours_rejects_bad_weekday_and_empty_shift() -> None:
    with pytest.raises(ValueError, match="weekdays are 0"):
        BusinessHours({7: [(540, 600)]})
    with pytest.raises(ValueError, match="equal start and end"):
        BusinessHours({0: [(540, 540)]})


# Keywords


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (" stop ", "opt_out"),
        ("Stop", "opt_out"),
        ("STOP.", "opt_out"),
        ("stop!", "opt_out"),
        ("STOPALL", "opt_out"),
        ("optout", "opt_out"),
        ("Opt-Out", "opt_out"),
        ("opt out", "opt_out"),
        ("unsubscribe", "opt_out"),
        ("Revoke", "opt_out"),
        ("quit\n", "opt_out"),
        ("unstop", "opt_in"),
        ("START", "opt_in"),
        ("yes", "opt_in"),
        ("help", "help"),
        ("Info", "help"),
    ],
)
def test_classify_keyword(body: str, kind: str) -> None:
    assert classify_keyword(body) == kind


@pytest.mark.parametrize(
    "body",
    ["stop texting me please", "stop please", "", "   ", "stopp", "yes please", "help?", "."],
)
def test_non_keywords_are_none(body: str) -> None:
    assert classify_keyword(body) is None


def test_keyword_sets_are_disjoint_and_include_fcc_words() -> None:
    assert not OPT_OUT_KEYWORDS & OPT_IN_KEYWORDS
    assert not OPT_OUT_KEYWORDS & HELP_KEYWORDS
    assert {"STOP", "QUIT", "END", "REVOKE", "OPTOUT", "CANCEL", "UNSUBSCRIBE"} <= OPT_OUT_KEYWORDS


@pytest.mark.parametrize("cap", [1, 2, 5])
def test_help_reply_states_the_configured_daily_cap(cap: int) -> None:
    """CTIA: the HELP reply gives the message frequency, which is the configured cap."""
    cfg = make_config(None, compliance={"max_sms_per_day": cap})
    text = inbound.help_text(cfg)
    assert f"Up to {cap} msgs/day." in text
    assert "Reply STOP to opt out" in text


# Frequency caps

NOW = utc(2026, 6, 10, 15, 0)
HOUR = timedelta(hours=1)


def test_within_cap_counts_only_the_trailing_window() -> None:
    assert within_cap([], NOW)
    assert within_cap([NOW - HOUR, NOW - 2 * HOUR], NOW)
    assert not within_cap([NOW - HOUR, NOW - 2 * HOUR, NOW - 3 * HOUR], NOW)
    # A send exactly 24 h ago has aged out.
    assert within_cap([NOW - 24 * HOUR, NOW - 2 * HOUR, NOW - 3 * HOUR], NOW)
    assert not within_cap([NOW - HOUR], NOW, limit=1)
    assert within_cap([NOW - 2 * HOUR], NOW, limit=1, window=HOUR)


def test_future_sends_count_against_the_cap() -> None:
    """Clock skew must not let a fourth message through."""
    assert not within_cap([NOW + HOUR, NOW - HOUR, NOW - 2 * HOUR], NOW)


def test_next_slot_is_now_when_under_cap() -> None:
    assert next_slot_under_cap([NOW - HOUR], NOW, 3, 24 * HOUR) == NOW


def test_next_slot_waits_for_oldest_counted_send_to_age_out() -> None:
    sends = [NOW - HOUR, NOW - 20 * HOUR, NOW - 5 * HOUR, NOW - 30 * HOUR]
    slot = next_slot_under_cap(sends, NOW, 3, 24 * HOUR)
    assert slot == NOW + 4 * HOUR  # the send 20 h ago leaves the window
    assert within_cap(sends, slot)
    assert not within_cap(sends, slot - timedelta(seconds=1))


def test_next_slot_when_far_over_cap() -> None:
    """Five sends in the window with a limit of 2: all but the newest must age out."""
    sends = [NOW - k * HOUR for k in (1, 2, 3, 4, 5)]
    slot = next_slot_under_cap(sends, NOW, 2, 24 * HOUR)
    assert slot == NOW + 22 * HOUR  # the send 2 h ago leaves the window
    assert within_cap(sends, slot, limit=2)
    assert not within_cap(sends, slot - timedelta(seconds=1), limit=2)


def test_cap_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        within_cap([], NOW, limit=0)
    with pytest.raises(ValueError, match="positive"):
        next_slot_under_cap([], NOW, 3, timedelta(0))
