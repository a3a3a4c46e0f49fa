"""Phone normalization and number -> state/zone lookups."""

from __future__ import annotations

import pytest

from leadd import phones


@pytest.mark.parametrize(
    "raw",
    [
        "(512) 555-0123",
        "512-555-0123",
        "512.555.0123",
        "5125550123",
        "1-512-555-0123",
        "+1 512 555 0123",
        "  +15125550123  ",
        "512-555-0123 ext. 4",
    ],
)
def test_normalize_us_formats_to_one_e164_key(raw: str) -> None:
    """Every way a shop types the same number must give the same dedupe key."""
    assert phones.normalize(raw) == "+15125550123"


@pytest.mark.parametrize("raw", [None, "", "   ", "abc", "555-0123", "+1 123 555 0123", "12"])
def test_normalize_rejects_empty_and_invalid(raw: str | None) -> None:
    assert phones.normalize(raw) is None


def test_normalize_uses_default_region_only_without_plus() -> None:
    assert phones.normalize("020 7946 0000", default_region="GB") == "+442079460000"
    assert phones.normalize("+44 20 7946 0000") == "+442079460000"
    # Without a plus and with the US default, a UK national number is not valid.
    assert phones.normalize("020 7946 0000") is None


def test_region_of() -> None:
    assert phones.region_of("+15125550123") == "US"
    assert phones.region_of("+14165550123") == "CA"
    assert phones.region_of("+442079460000") == "GB"
    assert phones.region_of("not a number") is None


@pytest.mark.parametrize(
    ("e164", "state"),
    [
        ("+15125550123", "TX"),  # Austin; fictional 555 exchange still resolves
        ("+17135550123", "TX"),  # Houston: no area-code entry in the geocoder, only cities
        ("+13055551234", "FL"),
        ("+14055551234", "OK"),
        ("+14015551234", "RI"),
        ("+12125551234", "NY"),  # geocoder says "New York, NY"
        ("+12025551234", "DC"),  # "Washington D.C."
        ("+12065551234", "WA"),  # "Washington State"
    ],
)
def test_us_state_of_by_area_code(e164: str, state: str) -> None:
    assert phones.us_state_of(e164) == state


@pytest.mark.parametrize(
    "e164",
    ["+18005550123", "+14165550123", "+442079460000", "+15125", "garbage"],
)
def test_us_state_of_is_none_outside_us_geography(e164: str) -> None:
    """Toll-free, Canadian, foreign and invalid numbers have no US state."""
    assert phones.us_state_of(e164) is None


def test_area_code_table_matches_installed_geocoder() -> None:
    """Guards the literal table against drift when phonenumbers is upgraded."""
    assert phones.derive_area_code_states() == dict(phones.AREA_CODE_STATE)


LOCATION = "America/Los_Angeles"
UNKNOWN = phones.US_RANGE | {(LOCATION, None)}


@pytest.mark.parametrize(
    ("e164", "places"),
    [
        ("+15125550123", {("America/Chicago", "TX")}),
        ("+13055551234", {("America/New_York", "FL")}),
        # South Dakota: phonenumbers puts this prefix in Mountain and North Dakota's Central.
        ("+16055551234", {("America/Denver", "SD"), ("America/North_Dakota/Center", "SD")}),
        # Idaho: the panhandle is Pacific, the south Mountain (Boise); 208-345 is Boise only.
        ("+12085551234", {("America/Boise", "ID"), ("America/Los_Angeles", "ID")}),
        ("+12083451234", {("America/Denver", "ID")}),
        ("+19075551234", {("America/Adak", "AK"), ("America/Anchorage", "AK")}),
        ("+18085551234", {("Pacific/Honolulu", "HI")}),
        # Another country: its own zones, no US state law. A UK mobile may be in the Crown
        # Dependencies; an Australian one anywhere from Perth to Lord Howe.
        ("+442079460000", {("Europe/London", None)}),
        (
            "+447911123456",
            {(z, None) for z in ("Europe/London", "Europe/Guernsey", "Europe/Jersey")}
            | {("Europe/Isle_of_Man", None)},
        ),
        ("+14165550123", {("America/Toronto", None)}),
        ("+17875551234", {("America/Puerto_Rico", None)}),
        # The shop's pretend customer in demo mode lives at the shop.
        ("+15555550123", {(LOCATION, None)}),
    ],
)
def test_places_of_lists_every_zone_a_number_may_be_in(e164: str, places: set[object]) -> None:
    assert phones.places_of(e164, LOCATION) == places


def test_places_of_australian_mobile_spans_the_continent() -> None:
    """Mobiles are not geographic in Australia: every zone of +61, Cocos Islands included."""
    places = phones.places_of("+61412345678", LOCATION)
    assert {("Australia/Perth", None), ("Australia/Sydney", None)} <= places
    assert ("Indian/Cocos", None) in places
    assert all(state is None for _, state in places)


@pytest.mark.parametrize(
    "e164",
    [
        "+18005550123",  # toll-free: phonenumbers only knows "somewhere in +1"
        "+15002345678",  # personal-communications 5XX: no state, no zone
        "not a number",
        "+1512",
    ],
)
def test_places_of_unknown_is_the_location_and_the_whole_us_range(e164: str) -> None:
    assert phones.places_of(e164, LOCATION) == UNKNOWN
    assert ("Europe/London", None) in phones.places_of(e164, "Europe/London")


def test_us_range_is_the_fifty_states_and_dc_without_territories() -> None:
    zones = {zone for zone, _ in phones.US_RANGE}
    states = {state for _, state in phones.US_RANGE}
    assert states == set(phones.AREA_CODE_STATE.values())
    assert len(states) == 51
    assert {
        "America/New_York",
        "America/Chicago",
        "America/Denver",
        "America/Phoenix",
        "America/Los_Angeles",
        "America/Anchorage",
        "America/Adak",
        "Pacific/Honolulu",
    } <= zones
    assert not zones & {"America/Puerto_Rico", "America/St_Thomas", "Pacific/Guam"}
    # Each state only where its area codes are: Texas law in Texas' zones, not Honolulu's.
    assert {zone for zone, state in phones.US_RANGE if state == "TX"} == {
        "America/Chicago",
        "America/Denver",
    }


def test_every_us_area_code_has_zones() -> None:
    """Guards `US_RANGE` against an area code phonenumbers has a state for but no zone."""
    for area_code in phones.AREA_CODE_STATE:
        places = phones.places_of(f"+1{area_code}2345678", LOCATION)
        assert places and places != UNKNOWN, area_code
