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


def test_timezone_of_single_zone() -> None:
    assert phones.timezone_of("+15125550123", "America/New_York") == "America/Chicago"
    assert phones.timezone_of("+13055551234", "America/Chicago") == "America/New_York"


@pytest.mark.parametrize(
    "e164",
    [
        "+16055551234",  # South Dakota: Denver and North Dakota/Center
        "+19075551234",  # Alaska: Anchorage and Adak
        "+18005550123",  # toll-free: every NANP zone
        "invalid",
    ],
)
def test_timezone_of_falls_back_unless_exactly_one_zone(e164: str) -> None:
    assert phones.timezone_of(e164, "America/Phoenix") == "America/Phoenix"
