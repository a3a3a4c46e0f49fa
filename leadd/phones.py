"""Phone numbers: E.164 normalization and where a number lives (country, US state, time zone).

The E.164 string is the dedupe key for contacts and opt-outs, so every number that enters
leadd goes through `normalize` first. The state and zone decide quiet hours: state laws
apply by the recipient's area code (Oklahoma explicitly presumes residence from it), and
the send window is in the recipient's local time. A number can span zones (South Dakota's
605 is Central and Mountain), so `places_of` answers with every place it may be in, and
quiet hours require the window to be open in all of them.

The area-code table is a literal derived from phonenumbers' English geocoder rather than
read from it at run time: loading the geocoder costs ~0.5 s and ~100 MB of RSS for data
leadd never uses. `tests/unit/test_phones.py` rebuilds the table with
`derive_area_code_states()` and fails when an upgraded phonenumbers disagrees with it.
The zone data is small and already loaded with phonenumbers, so it is read at import.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat
from phonenumbers import timezone as _pn_timezone
from phonenumbers.tzdata import TIMEZONE_DATA

from leadd.compliance import Place

# phonenumbers answers this when it knows nothing about a number's zone.
_UNKNOWN_ZONE = "Etc/Unknown"

# US geographic area codes by state, generated from phonenumbers' "en" geocoder by
# derive_area_code_states(). Non-geographic codes (toll-free 8XX, 5XX, 900) have no state.
_STATE_AREA_CODES: Mapping[str, str] = {
    "AK": "907",
    "AL": "205 251 256 334 659 938",
    "AR": "327 479 501 870",
    "AZ": "480 520 602 623 928",
    "CA": (
        "209 213 279 310 323 341 350 369 408 415 424 442 510 530 559 562 619 626 628 650 657"
        " 661 669 707 714 738 747 760 805 818 820 831 840 858 909 916 925 949 951"
    ),
    "CO": "303 719 720 748 970 983",
    "CT": "203 475 860 959",
    "DC": "202 771",
    "DE": "302",
    "FL": (
        "239 305 321 324 352 386 407 448 561 645 656 689 727 728 754 772 786 813 850 863 904"
        " 941 954"
    ),
    "GA": "229 404 470 478 678 706 762 770 912 943",
    "HI": "808",
    "IA": "319 515 563 641 712",
    "ID": "208 986",
    "IL": "217 224 309 312 331 447 464 618 630 708 730 773 779 815 847 872",
    "IN": "219 260 317 463 574 765 812 930",
    "KS": "316 620 785 913",
    "KY": "270 364 502 606 859",
    "LA": "225 318 337 504 985",
    "MA": "339 351 413 508 617 774 781 857 978",
    "MD": "227 240 301 410 443 667",
    "ME": "207",
    "MI": "231 248 269 313 517 586 616 734 810 906 947 989",
    "MN": "218 320 507 612 651 763 952",
    "MO": "235 314 417 557 573 636 660 816 975",
    "MS": "228 601 662 769",
    "MT": "406",
    "NC": "252 336 472 704 743 828 910 919 980 984",
    "ND": "701",
    "NE": "308 402 531",
    "NH": "603",
    "NJ": "201 551 609 640 732 848 856 862 908 973",
    "NM": "505 575",
    "NV": "702 725 775",
    "NY": "212 315 329 332 347 363 516 518 585 607 631 646 680 716 718 838 845 914 917 929 934",
    "OH": "216 220 234 283 326 330 380 419 440 513 567 614 740 937",
    "OK": "405 539 572 580 918",
    "OR": "458 503 541 971",
    "PA": "215 223 267 272 412 445 484 570 582 610 717 724 814 835 878",
    "RI": "401",
    "SC": "803 821 839 843 854 864",
    "SD": "605",
    "TN": "423 615 629 731 865 901 931",
    "TX": (
        "210 214 254 281 325 346 361 409 430 432 469 512 682 713 726 737 806 817 830 832 903"
        " 915 936 940 945 956 972 979"
    ),
    "UT": "385 435 801",
    "VA": "276 434 540 571 686 703 757 804 826 948",
    "VT": "802",
    "WA": "206 253 360 425 509 564",
    "WI": "262 274 353 414 534 608 715 920",
    "WV": "304 681",
    "WY": "307",
}

AREA_CODE_STATE: Mapping[str, str] = MappingProxyType(
    {code: state for state, codes in _STATE_AREA_CODES.items() for code in codes.split()}
)
"""Three-digit US area code -> two-letter state (DC included)."""

# Geocoder descriptions are either a state name ("Texas"), a city with a state code
# ("Austin, TX"), or one of the two Washingtons.
_STATE_NAMES: Mapping[str, str] = {
    "Alabama": "AL",
    "Alaska": "AK",
    "Arizona": "AZ",
    "Arkansas": "AR",
    "California": "CA",
    "Colorado": "CO",
    "Connecticut": "CT",
    "Delaware": "DE",
    "District of Columbia": "DC",
    "Washington D.C.": "DC",
    "Florida": "FL",
    "Georgia": "GA",
    "Hawaii": "HI",
    "Idaho": "ID",
    "Illinois": "IL",
    "Indiana": "IN",
    "Iowa": "IA",
    "Kansas": "KS",
    "Kentucky": "KY",
    "Louisiana": "LA",
    "Maine": "ME",
    "Maryland": "MD",
    "Massachusetts": "MA",
    "Michigan": "MI",
    "Minnesota": "MN",
    "Mississippi": "MS",
    "Missouri": "MO",
    "Montana": "MT",
    "Nebraska": "NE",
    "Nevada": "NV",
    "New Hampshire": "NH",
    "New Jersey": "NJ",
    "New Mexico": "NM",
    "New York": "NY",
    "North Carolina": "NC",
    "North Dakota": "ND",
    "Ohio": "OH",
    "Oklahoma": "OK",
    "Oregon": "OR",
    "Pennsylvania": "PA",
    "Rhode Island": "RI",
    "South Carolina": "SC",
    "South Dakota": "SD",
    "Tennessee": "TN",
    "Texas": "TX",
    "Utah": "UT",
    "Vermont": "VT",
    "Virginia": "VA",
    "Washington": "WA",
    "Washington State": "WA",
    "West Virginia": "WV",
    "Wisconsin": "WI",
    "Wyoming": "WY",
}
_STATE_CODES = frozenset(_STATE_NAMES.values())


def _area_code_zones() -> dict[str, frozenset[str]]:
    """US area code -> every zone phonenumbers gives any of its prefixes (fast: a dict scan)."""
    zones: dict[str, set[str]] = {}
    for prefix, names in TIMEZONE_DATA.items():
        area_code = prefix[1:4]
        if prefix.startswith("1") and len(prefix) >= 4 and area_code in AREA_CODE_STATE:
            zones.setdefault(area_code, set()).update(name for name in names if _loadable(name))
    return {area_code: frozenset(names) for area_code, names in zones.items()}


@functools.cache
def _loadable(zone: str) -> bool:
    """Whether zoneinfo knows `zone` (phonenumbers may name one newer than the host's tzdata)."""
    if zone == _UNKNOWN_ZONE:
        return False
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


_AREA_CODE_ZONES: Mapping[str, frozenset[str]] = MappingProxyType(_area_code_zones())
_US_ZONES = frozenset().union(*_AREA_CODE_ZONES.values())
US_RANGE: frozenset[Place] = frozenset(
    (zone, AREA_CODE_STATE[area_code])
    for area_code, zones in _AREA_CODE_ZONES.items()
    for zone in zones
)
"""Every (zone, state) of every US geographic area code: the 50 states and DC, Alaska and
Hawaii included. Territories are not: they have region codes of their own (PR, VI, GU, ...),
and a window shared by Guam and Honolulu would leave almost no sending time."""

# phonenumbers' answer for a +1 number it can only place "somewhere in NANP": 25 countries,
# Guam to Newfoundland, 9:00-20:00 everywhere at once never happens.
_NANP_ZONES = frozenset(zone for zone in TIMEZONE_DATA.get("1", ()) if _loadable(zone))


def normalize(raw: str | None, default_region: str = "US") -> str | None:
    """Return `raw` as E.164 ("+15125550123"), or None when it is empty or not a real number.

    `default_region` is the location's country, used when the input has no "+" prefix.
    Only valid numbers pass: a merely "possible" one (like a 7-digit local number) would
    become a dedupe key nobody can text.
    """
    if raw is None or not raw.strip():
        return None
    number = _parse(raw, default_region)
    if number is None:
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def region_of(e164: str) -> str | None:
    """ISO country code of a normalized number ("US", "CA", "GB"), or None if invalid."""
    number = _parse(e164, None)
    if number is None:
        return None
    return phonenumbers.region_code_for_number(number)


def us_state_of(e164: str) -> str | None:
    """Two-letter US state from the area code, or None outside the US or for toll-free.

    Only the area code is used, so fictional 555 exchanges still resolve; state texting
    laws go by the number's area code, not by where the exchange was issued.
    """
    number = _parse(e164, None)
    return None if number is None else _us_state(number)


@functools.lru_cache(maxsize=4096)
def places_of(e164: str, location_zone: str) -> frozenset[Place]:
    """Every (IANA zone, US state) the owner of `e164` may be in, for quiet hours.

    - A US number: its area code's state, in each zone phonenumbers gives for its prefix
      (Idaho's 208: Mountain and Pacific; South Dakota's 605: Central and Mountain).
    - Another country's number: each of its zones, with no US state (state laws go by a
      US area code). A UK mobile may be in London, Guernsey, Jersey or the Isle of Man.
    - A number phonenumbers cannot place (toll-free and other non-geographic US numbers,
      NANP numbers known only as "somewhere in +1", unknown zones, invalid input): the
      location's zone plus the whole US range, `US_RANGE`.
    - A demo number (+1 555): the location's zone, as the shop's own pretend customer.

    Cached: it runs for every SMS, and the numbers of a day's sends repeat.
    """
    number = _parse(e164, None)
    if number is None:
        return _unknown(location_zone)
    if _is_demo_number(number):
        return frozenset({(location_zone, None)})
    zones = frozenset(z for z in _pn_timezone.time_zones_for_number(number) if _loadable(z))
    state = _us_state(number)
    if state is not None:
        known = zones if zones and zones <= _US_ZONES else _AREA_CODE_ZONES[_area_code(number)]
        return frozenset((zone, state) for zone in known)
    if not zones or zones == _NANP_ZONES or phonenumbers.region_code_for_number(number) == "US":
        return _unknown(location_zone)
    return frozenset((zone, None) for zone in zones)


def derive_area_code_states() -> dict[str, str]:
    """Rebuild `AREA_CODE_STATE` from phonenumbers' geocoder (slow: ~0.5 s, ~100 MB).

    For maintainers and the drift test, never for the daemon's hot path. An area code
    whose own entry is missing takes the state its longer prefixes agree on; an area code
    whose prefixes disagree, or that is not a US geographic code, is left out.
    """
    from phonenumbers.geodata import GEOCODE_DATA  # deferred: the import is the slow part

    table: dict[str, str] = {}
    for area_code in range(200, 1000):
        sample = phonenumbers.parse(f"+1{area_code}2345678")
        if phonenumbers.region_code_for_number(sample) != "US":
            continue
        if not phonenumbers.is_valid_number(sample):
            continue
        prefix = f"1{area_code}"
        own = GEOCODE_DATA.get(prefix, {}).get("en")
        if own is not None:
            states = {_state_from_description(own)}
        else:
            states = {
                _state_from_description(names["en"])
                for key, names in GEOCODE_DATA.items()
                if key.startswith(prefix) and "en" in names
            }
        if len(states) == 1:
            (state,) = states
            if state is not None:
                table[str(area_code)] = state
    return table


def _state_from_description(description: str) -> str | None:
    head, _, tail = description.rpartition(", ")
    if head and tail in _STATE_CODES:
        return tail
    return _STATE_NAMES.get(description)


def _parse(raw: str, region: str | None) -> PhoneNumber | None:
    try:
        number = phonenumbers.parse(raw, region)
    except NumberParseException:
        return None
    if phonenumbers.is_valid_number(number) or _is_demo_number(number):
        return number
    return None


def _is_demo_number(number: PhoneNumber) -> bool:
    """+1 555-XXX-XXXX: the fictional range demo_mode and `send-test-lead` use. libphonenumber
    calls area code 555 invalid, but demo leads must flow end to end like real ones."""
    return (
        number.country_code == 1
        and str(number.national_number).startswith("555")
        and len(str(number.national_number)) == 10
    )


def _us_state(number: PhoneNumber) -> str | None:
    if phonenumbers.region_code_for_number(number) != "US":
        return None
    return AREA_CODE_STATE.get(_area_code(number))


def _area_code(number: PhoneNumber) -> str:
    return str(number.national_number)[:3]


def _unknown(location_zone: str) -> frozenset[Place]:
    return US_RANGE | {(location_zone, None)}
