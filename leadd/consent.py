"""Pure consent rules for SMS: the STOP/START/HELP keywords and the daily frequency cap.

Functions of their arguments only (no clock, no I/O); time windows are in compliance.py.
Sources for the numbers: /work/shared/reference/compliance.md §3.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal, TypeAlias

Keyword: TypeAlias = Literal["opt_out", "opt_in", "help"]


# compliance.md §3 and messaging.md §4: Twilio's default keywords (REVOKE and OPTOUT added
# 2025-05-14 after FCC 24-24). Matching is on the whole message, as carriers do.
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})

# Inside the message, spaces, hyphens and underscores are dropped before matching: the FCC
# lists "opt out" as a revocation phrase even though Twilio only matches OPTOUT.
_KEYWORD_JOINERS_RE = re.compile(r"[\s\-_]+")
_KEYWORD_TRAILING_RE = re.compile(r"[.!]+$")


def classify_keyword(body: str) -> Keyword | None:
    """Classify a whole inbound message as an opt-out, opt-in or help keyword, or None.

    Only the entire message counts ("stop please" is a sentence, not a keyword), but
    case, surrounding whitespace, trailing "." or "!" and inner spaces or hyphens
    ("Opt-Out") are ignored. Free-text revocations are for a later, fuzzier layer.
    """
    core = _KEYWORD_TRAILING_RE.sub("", body.strip())
    word = _KEYWORD_JOINERS_RE.sub("", core).upper()
    if word in OPT_OUT_KEYWORDS:
        return "opt_out"
    if word in OPT_IN_KEYWORDS:
        return "opt_in"
    if word in HELP_KEYWORDS:
        return "help"
    return None


def within_cap(
    sent_times: Sequence[datetime],
    now: datetime,
    limit: int = 3,
    window: timedelta = timedelta(hours=24),
) -> bool:
    """Whether one more message at `now` keeps the count in the trailing `window` <= `limit`.

    A send exactly `window` ago no longer counts. Sends after `now` (clock skew between
    hosts) do count: erring towards fewer messages is the safe side.
    """
    _check_cap(limit, window)
    return len(_counted(sent_times, now, window)) < limit


def next_slot_under_cap(
    sent_times: Sequence[datetime],
    now: datetime,
    limit: int = 3,
    window: timedelta = timedelta(hours=24),
) -> datetime:
    """`now` if under the cap, else when enough old sends age out to allow one more."""
    _check_cap(limit, window)
    counted = sorted(_counted(sent_times, now, window))
    if len(counted) < limit:
        return now
    # With n counted sends, the (n - limit + 1)-th oldest must leave the window.
    return counted[len(counted) - limit] + window


def _counted(sent_times: Sequence[datetime], now: datetime, window: timedelta) -> list[datetime]:
    cutoff = now - window
    return [sent for sent in sent_times if sent > cutoff]


def _check_cap(limit: int, window: timedelta) -> None:
    if limit < 1:
        raise ValueError(f"frequency cap limit must be at least 1, got {limit}")
    if window <= timedelta(0):
        raise ValueError(f"frequency cap window must be positive, got {window}")
