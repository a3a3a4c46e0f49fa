"""Pure parts of the conversation services: chat link tokens, booking slots, the sign-in
slowdown, message checks, inbox search, the staff config section, hash-password."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from argon2 import PasswordHasher

from leadd import chatlinks as links
from leadd import config as configmod
from leadd.config import chat_key
from leadd.conversations import booking, inbox, replies, staff, thread
from leadd.store.events import parse
from leadd.store.models import LeadSearch, MessageView, TouchPointView
from tests.conftest import ROOT, base_config

CHICAGO = ZoneInfo("America/Chicago")
TENANT = uuid.UUID("6f1c1c53-3f3e-4d0a-9d7e-0a6b1b1e0001")


def chicago(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=CHICAGO).astimezone(dt.UTC)


def cfg(**overrides: Any) -> configmod.Config:
    return configmod.build(base_config(**overrides), source="test.yaml", env={})


# --------------------------------------------------------------------------- link tokens


def test_chat_tokens_are_256_bit_derived_per_lead_and_only_their_hash_is_stored() -> None:
    secret = "s" * 32
    a, b = uuid.uuid4(), uuid.uuid4()
    token = links.chat_token(secret, TENANT, a)
    assert len(token) == 43 and links.TOKEN_SHAPE.fullmatch(token)  # 256 bits, url-safe
    assert token == links.chat_token(secret, TENANT, a)  # rebuilt for every later message
    assert token != links.chat_token(secret, TENANT, b)
    assert token != links.chat_token("t" * 32, TENANT, a)
    assert token != links.chat_token(secret, uuid.uuid4(), a)  # bound to the tenant
    assert links.token_hash(token) != token.encode() and len(links.token_hash(token)) == 32


def test_a_link_is_left_out_when_the_session_was_made_with_another_secret() -> None:
    config = chat_key.with_secret(cfg(chat={"secret": "k" * 32}))
    lead = uuid.uuid4()
    stored = links.session_hash(config, lead)
    assert links.link_token(config, lead, stored) == links.chat_token(
        "k" * 32, config.tenant.id, lead
    )
    other = links.session_hash(chat_key.with_secret(cfg(chat={"secret": "x" * 32})), lead)
    assert links.link_token(config, lead, other) is None
    assert links.link_token(config, lead, None) is None  # no session (not enriched yet)


def test_without_a_configured_secret_a_key_file_is_made_once_and_kept(tmp_path: Path) -> None:
    first = chat_key.with_secret(cfg(state_dir=str(tmp_path)))
    again = chat_key.with_secret(cfg(state_dir=str(tmp_path)))
    assert len(first.chat.secret) >= 32 and first.chat.secret == again.chat.secret
    key = tmp_path / chat_key.KEY_FILE
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir()] == [chat_key.KEY_FILE]  # no temp file left


def test_config_defaults_chat_links_to_the_public_url_and_validates_the_secret() -> None:
    c = cfg()
    assert c.chat.base_url == "https://leads.example.com/c" and c.chat.link_ttl == 30 * 86400
    with pytest.raises(configmod.ConfigError, match=r"chat\.secret: expected a random string"):
        cfg(chat={"secret": "too short"})


# --------------------------------------------------------------------------- booking slots


def location(**hours: str) -> configmod.Location:
    return cfg(locations=[{**base_config()["locations"][0], "hours": hours}]).locations[0]


def test_slots_lie_inside_opening_hours_from_two_hours_ahead_over_seven_days() -> None:
    loc = location(mon="08:00-12:00", tue="closed", wed="09:00-11:30", sat="09:00-10:00")
    now = chicago(2026, 3, 2, 7, 30)  # a Monday, 7:30
    got = booking.slots(loc, now)
    local = [s.start.astimezone(CHICAGO) for s in got]
    assert [f"{t:%a %H:%M}" for t in local] == [
        "Mon 10:00",  # 08:00 and 09:00 are less than two hours away
        "Mon 11:00",
        "Wed 09:00",
        "Wed 10:00",  # 10:00-11:00 fits; 11:00-12:00 does not (closes at 11:30)
        "Sat 09:00",  # Tuesday closed; next Monday is the 8th day
    ]
    assert all(s.end - s.start == dt.timedelta(minutes=booking.SLOT_MINUTES) for s in got)
    assert got[0].day == "Monday, March 2" and got[0].time == "10:00 AM"
    assert booking.find_slot(loc, now, got[2].value) == got[2]
    with pytest.raises(booking.UnknownSlot):
        booking.find_slot(loc, now, "2026-03-02T13:00Z")  # 7:00 local: not open
    with pytest.raises(booking.UnknownSlot):
        booking.find_slot(loc, now + dt.timedelta(hours=2), got[0].value)  # no longer 2 h ahead


def test_slots_skip_a_time_that_does_not_exist_on_the_dst_day() -> None:
    loc = location(sun="01:00-04:00")
    now = chicago(2026, 3, 7, 12, 0)  # Saturday; Sunday March 8 springs forward at 2:00
    got = [f"{s.start.astimezone(CHICAGO):%H:%M}" for s in booking.slots(loc, now)]
    assert got[:2] == ["01:00", "03:00"]  # 02:00 does not exist that night


def test_no_hours_means_no_slots() -> None:
    assert booking.slots(location(), chicago(2026, 3, 2, 9, 0)) == []


# --------------------------------------------------------------------------- sign-in


def test_lockout_doubles_after_the_limit_up_to_the_cap() -> None:
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    limit = staff.ACCOUNT_LIMIT
    assert staff.lockout_until(limit - 1, t, limit) is None
    assert staff.lockout_until(limit, t, limit) == t + staff.BASE_DELAY
    assert staff.lockout_until(limit + 1, t, limit) == t + 2 * staff.BASE_DELAY
    assert staff.lockout_until(limit + 40, t, limit) == t + staff.MAX_DELAY


def test_csrf_tokens_are_bound_to_the_cookie_and_compared_safely() -> None:
    token = staff.csrf_token("cookie-value")
    assert staff.csrf_ok("cookie-value", token)
    for secret, given in (("other", token), (None, token), ("cookie-value", None), ("", "")):
        assert not staff.csrf_ok(secret, given)


# --------------------------------------------------------------------------- messages


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  hi\r\nthere  ", "hi\nthere"),
        ("<b>x</b>", "<b>x</b>"),  # stored as written; escaped when shown
    ],
)
def test_clean_message_keeps_the_text(text: str, expected: str) -> None:
    assert replies.clean_message(text, 100) == expected


@pytest.mark.parametrize("text", ["", "   \n ", "x" * 101, "a\x00b", "a\ud800b"])
def test_clean_message_refuses_empty_oversized_and_unstorable(text: str) -> None:
    with pytest.raises(replies.BadMessage):
        replies.clean_message(text, 100)


def test_inbox_search_is_the_ops_lead_search_and_drops_what_text_cannot_hold() -> None:
    """The inbox searches as the ops lead list does (LeadSearch.of): LIKE wildcards are plain
    characters (strpos), a phone matches in E.164 and by its digits."""
    assert inbox.search("", "US") is None and inbox.search("  \x00 ", "US") is None
    assert inbox.search(" Jamie ", "US") == LeadSearch("jamie")
    assert inbox.search("50%_off", "US") == LeadSearch("50%_off")
    assert inbox.search("(312) 555-0123", "US") == LeadSearch(
        "(312) 555-0123", phone="+13125550123", digits="3125550123"
    )
    assert inbox.search("Ja\x00mie\ud800", "US") == LeadSearch("jamie")
    assert inbox.search("x" * 500, "US") == LeadSearch("x" * inbox.MAX_QUERY)


def test_notify_payloads_of_another_tenant_or_malformed_are_ignored() -> None:
    lead = uuid.uuid4()
    good = f'{{"tenant": "{TENANT}", "lead": "{lead}", "kind": "message", "location": "x"}}'
    event = parse(good, TENANT)
    assert event is not None and (event.lead_id, event.kind, event.location_id) == (
        lead,
        "message",
        "x",
    )
    assert parse(good, uuid.uuid4()) is None
    for bad in ("", "[]", "{}", '{"tenant": "nope"}', f'{{"tenant": "{TENANT}", "lead": 5}}'):
        assert parse(bad, TENANT) is None


# --------------------------------------------------------------------------- thread lines

T = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)


def message(id_: int, direction: str, body: str, author: str | None = None, minute: int = 0,
            channel: str = "sms", status: str | None = None) -> MessageView:  # fmt: skip
    return MessageView(id_, direction, channel, body, None, author, False, status,
                       T + dt.timedelta(minutes=minute))  # fmt: skip


def staff_sms(id_: int, state: str, body: str, minute: int, error: str | None = None,
              author: str = "staff:alex@acme.example") -> TouchPointView:  # fmt: skip
    at = T + dt.timedelta(minutes=minute)
    return TouchPointView(id_, "staff", "staff", 0, "staff", "sms", state, at, None, 1, error,
                          False, author, at, None, body)  # fmt: skip


def test_a_staff_sms_is_one_line_queued_sent_or_refused_and_authors_are_named() -> None:
    """Until it is sent a staff SMS shows as its touch point ('sending', or 'not sent' with the
    reason); once sent its transcript line stands for it and the touch point is not shown
    again. Staff authors get their configured name (first name for the customer); other
    authors (an API token, a CLI user) are shown as recorded."""
    c = cfg(staff=[staff_user()])
    sequence_step = TouchPointView(9, "sequence", "default", 0, "ack", "sms", "sent", T, T, 1,
                                   None, False, None, T, None)  # fmt: skip
    messages = [
        message(1, "outbound", "Hi!", minute=0),
        message(2, "inbound", "Tuesday?", minute=1),
        message(3, "outbound", "Sure", "staff:alex@acme.example", 2, status="delivered"),
        message(4, "outbound", "From the API", "ops-bot", 3, channel="web"),
    ]
    touch_points = [
        sequence_step,
        staff_sms(10, "sent", "Sure", 2),
        staff_sms(11, "cancelled", "Still there?", 4, "sms opted out"),
        staff_sms(12, "scheduled", "On my way", 5, author="staff:gone@acme.example"),
    ]
    got = thread.lines(c, messages, touch_points)
    assert [(x.key, x.kind, x.name, x.status, x.reason) for x in got] == [
        ("m1", "automation", None, None, None),
        ("m2", "customer", None, None, None),
        ("m3", "staff", "Alex Kim", "delivered", None),
        ("m4", "staff", None, None, None),
        ("t11", "staff", "Alex Kim", "not_sent", "sms opted out"),
        ("t12", "staff", None, "sending", None),
    ]
    [sure] = [x for x in thread.lines(c, messages, first_names=True) if x.key == "m3"]
    assert sure.name == "Alex"
    assert thread.who(c, "staff:alex@acme.example") == "Alex Kim"
    assert thread.who(c, "cli:root") == "cli:root" and thread.who(c, None) is None
    assert thread.actor("alex@acme.example") == "staff:alex@acme.example"


# --------------------------------------------------------------------------- staff config


def staff_user(**fields: Any) -> dict[str, Any]:
    return {
        "email": "Alex@Acme.example",
        "name": "Alex Kim",
        "password_hash": PasswordHasher().hash("a long password"),
        "locations": ["downtown"],
        **fields,
    }


def test_staff_section_reads_users_and_their_locations() -> None:
    c = cfg(
        staff=[staff_user(), staff_user(email="m@acme.example", role="manager", locations="all")]
    )
    alex = c.staff_user(" alex@acme.EXAMPLE ")
    assert alex is not None and alex.email == "alex@acme.example" and alex.visible == ("downtown",)
    assert alex.sees("downtown") and not alex.sees("uptown")
    manager = c.staff_user("m@acme.example")
    assert manager is not None and manager.visible is None and manager.sees("anywhere")
    assert c.staff_user("nobody@acme.example") is None


@pytest.mark.parametrize(
    ("user", "message"),
    [
        (staff_user(password_hash="hunter2"), "staff[0].password_hash: expected an Argon2id hash"),
        (staff_user(locations=["nowhere"]), "staff[0].locations: unknown location 'nowhere'"),
        (staff_user(locations=None), "staff[0].locations: required"),
        (staff_user(role="admin"), "staff[0].role: expected agent or manager"),
        (staff_user(email="not-an-email"), "staff[0].email: expected an e-mail address"),
        ({**staff_user(), "pasword": "x"}, "staff[0].pasword: unknown key"),
    ],
)
def test_staff_section_errors_name_the_key(user: dict[str, Any], message: str) -> None:
    with pytest.raises(configmod.ConfigError) as err:
        cfg(staff=[user])
    assert any(message in p for p in err.value.problems), err.value.problems


def test_staff_emails_are_unique() -> None:
    with pytest.raises(
        configmod.ConfigError, match=r"staff\[1\]\.email: 'alex@acme.example' is listed twice"
    ):
        cfg(staff=[staff_user(), staff_user(email="ALEX@acme.example")])


def test_hash_password_prints_an_argon2id_hash_read_from_stdin() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = lambda text: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "leadd", "hash-password"],
        input=text,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    ok = run("correct horse battery\n")
    assert ok.returncode == 0, ok.stderr
    printed = ok.stdout.strip()
    assert printed.startswith("$argon2id$") and PasswordHasher().verify(
        printed, "correct horse battery"
    )
    short = run("short\n")
    assert short.returncode == 1 and "at least" in short.stderr and short.stdout == ""


# --------------------------------------------------------------------------- built-in messages


def _render_builtin(chat_link: str | None) -> dict[str, str]:
    from leadd import sequences, templates

    context = templates.build_context(
        customer={"first_name": "Jamie"},
        vehicle={"year": 2016, "make": "Honda", "model": "Civic"},
        services=[{"name": "Oil change", "price": 49.99}],
        location={
            "name": "Acme",
            "phone": "+15125550100",
            "address": "1 Main",
            "hours_today": "8-6",
        },
        tenant_name="Acme",
        order_number="1",
        chat_link=chat_link,
        unsubscribe_link="https://x/u",
    )
    return {
        s.name: sequences.compiled(s.template).render(context) for s in configmod.DEFAULT_SEQUENCE
    }


def test_the_built_in_first_sms_and_email_carry_the_chat_link() -> None:
    link = "https://leads.example.com/c/abc"
    out = _render_builtin(link)
    assert link in out["instant_ack"] and link in out["estimate_email"]
    assert out["estimate_email"].rstrip().endswith(link)


def test_without_a_link_the_built_in_email_does_not_end_in_an_empty_chat_with_us() -> None:
    out = _render_builtin(None)
    for text in out.values():
        assert "chat with us" not in text.lower() and "book a time" not in text
    assert out["estimate_email"].rstrip().endswith("Questions? Call us at +15125550100.")
