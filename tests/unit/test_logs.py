"""JSON logs: one object per line; phones, e-mails and secrets never reach the output."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import phonenumbers
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from leadd import logs

PHONE = "+15125550123"
EMAIL = "jamie.rivera@example.com"
TOKEN = "tw-auth-9f8e7d6c5b4a"


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """Route leadd's JSON handler to a buffer; restore the root logger afterwards."""
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    logs.setup("debug", "json", stream=stream)
    yield stream
    for handler in list(root.handlers):
        if getattr(handler, "_leadd", False):
            root.removeHandler(handler)
    root.setLevel(level)


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = stream.getvalue().splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]


def test_one_json_object_per_line_with_the_standard_fields(output: io.StringIO) -> None:
    log = logs.get_logger("leadd.test")
    log.info("lead.created", lead_id="abc", count=2)
    log.warning("multi\nline event", note="a\nb")
    first, second = records(output)
    assert output.getvalue().count("\n") == 2
    assert set(first) == {"time", "level", "logger", "event", "lead_id", "count"}
    assert first["level"] == "info"
    assert first["logger"] == "leadd.test"
    assert first["event"] == "lead.created"
    assert first["count"] == 2
    assert first["time"].endswith("+00:00")
    assert second["level"] == "warning"
    assert second["note"] == "a\nb"


def test_phones_and_emails_are_masked_in_event_and_fields(output: io.StringIO) -> None:
    log = logs.get_logger("leadd.test")
    log.info(
        f"sms to {PHONE} and {EMAIL}", to=PHONE, contact={"email": EMAIL, "alt": ["(512) 555-0199"]}
    )
    text = output.getvalue()
    [rec] = records(output)
    for secret in (PHONE, EMAIL, "5125550123", "555-0199", "jamie.rivera"):
        assert secret not in text
    assert rec["to"] == "+*********23"
    assert rec["contact"]["email"] == "j***@example.com"
    assert rec["contact"]["alt"][0].endswith("99")
    assert "j***@example.com" in rec["event"]


def test_tracebacks_are_masked(output: io.StringIO) -> None:
    log = logs.get_logger("leadd.test")
    try:
        raise ValueError(f"cannot deliver to {PHONE} / {EMAIL}")
    except ValueError:
        log.exception("send.failed")
    [rec] = records(output)
    assert "ValueError: cannot deliver to +*********23 / j***@example.com" in rec["traceback"]
    assert PHONE not in output.getvalue() and EMAIL not in output.getvalue()


def test_secret_fields_never_appear(output: io.StringIO) -> None:
    log = logs.get_logger("leadd.test")
    log.info(
        "twilio.configured",
        auth_token=TOKEN,
        config={"api_key": TOKEN, "webhook_secret": TOKEN, "password": TOKEN},
        Authorization=f"Basic {TOKEN}",
        account_sid="AC123",
    )
    [rec] = records(output)
    assert TOKEN not in output.getvalue()
    assert rec["auth_token"] == "***"
    assert rec["config"] == {"api_key": "***", "webhook_secret": "***", "password": "***"}
    assert rec["Authorization"] == "***"
    assert rec["account_sid"] == "AC123"  # identifiers are not secrets


def test_dates_and_ids_are_not_mistaken_for_phones(output: io.StringIO) -> None:
    log = logs.get_logger("leadd.test")
    log.info("poll.cursor", at="2024-05-01T10:20:30+00:00", order_id="ord_1234567890123")
    [rec] = records(output)
    assert rec["at"] == "2024-05-01T10:20:30+00:00"
    assert rec["order_id"] == "ord_1234567890123"


def test_console_format_masks_too() -> None:
    record = logging.LogRecord("leadd.test", logging.INFO, __file__, 1, "hi", None, None)
    record.fields = {"to": PHONE, "auth_token": TOKEN}
    line = logs.ConsoleFormatter().format(record)
    assert PHONE not in line and TOKEN not in line
    assert "to=+*********23" in line
    assert "auth_token=***" in line


# Phone masking in the formats numbers arrive in


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("+15125550100", "+*********00"),
        ("15125550100", "*********00"),
        ("5125550100", "********00"),
        ("(512) 555-0100", "(********00"),
        ("512.555.0100", "********00"),
        ("1 (512) 555-0100", "*********00"),
        ("+1 (512) 555-0100", "+*********00"),
        ("+1\u00a0512\u00a0555\u00a00100", "+*********00"),
        ("512–555–0100", "********00"),  # en dashes from a word processor
        ("+44 20 7946 0000", "+**********00"),
        ("0044 20 7946 0000", "************00"),
        ("+33 6 12 34 56 78", "+*********78"),
        ("+376 312 345", "+*******45"),  # Andorra: 9 digits with the country code
        ("+5215512345678", "+***********78"),
        ("%2B15125550100", "%2B*********00"),  # a form-encoded Twilio body
        ("To=%2B15125550100&From=%2B15125550199", "To=%2B*********00&From=%2B*********99"),
        ("+15125550100ext. 4", "+*********00ext. 4"),
        ("5125550100x12", "********00x12"),
        ("call ５１２５５５０１００ now", "call ********００ now"),  # full-width digits
    ],
)
def test_phone_formats_are_masked(text: str, masked: str) -> None:
    assert logs.redact(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T10:20:30+00:00",
        "2024-05-01 10:20:30",
        "ord_1234567890123",
        "123e4567-e89b-12d3-a456-426614174000",  # a UUID whose last group is all digits
        "/v1/orders/1234567890",
        "took 12345 ms",
    ],
)
def test_dates_ids_and_paths_are_not_phones(text: str) -> None:
    assert logs.redact(text) == text


def test_every_countrys_example_numbers_are_masked_in_every_international_format() -> None:
    """phonenumbers' example mobile and fixed-line number for every region, written as E.164,
    international, tel: URI, and national when it has 10+ digits: none survives."""
    formats = [PhoneNumberFormat.E164, PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.RFC3966]
    checked = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is None:
                continue
            national = phonenumbers.national_significant_number(number)
            written = [phonenumbers.format_number(number, f) for f in formats]
            national_format = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
            if sum(c.isdigit() for c in national_format) >= 10:
                written.append(national_format)
            for text in written:
                out = logs.redact(f"sms to {text}, queued")
                assert text not in out, (region, text, out)
                assert national not in re.sub(r"\D", "", out), (region, text, out)
                checked += 1
    assert checked > 1000


# E-mail masking (issue 7, defect 10): one pattern for RFC 5322 and internationalised addresses


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("jamie.rivera@example.com", "j***@example.com"),
        ("josé@example.com", "j***@example.com"),
        ("o'brien@example.com", "o***@example.com"),
        ("jamie+leads@example.com", "j***@example.com"),
        ("a!#$%&'*+/=?^_`{|}~-b@example.com", "a***@example.com"),
        ("jose\u0301@example.com", "j***@example.com"),  # é as e + combining accent
        ("用户@例子.广告", "用***@例子.广告"),
        ("jörg@münchen.de", "j***@münchen.de"),
        ("jörg@xn--mnchen-3ya.de", "j***@xn--mnchen-3ya.de"),
        ("Ωmega@ελληνικά.gr", "Ω***@ελληνικά.gr"),
        ('"jamie rivera"@example.com', '"***@example.com'),
        ('"o\\"brien"@example.com', '"***@example.com'),
        ("jamie@[192.0.2.1]", "j***@[192.0.2.1]"),
        ("x@example.com", "***@example.com"),  # a one-letter local part is all of it
        ("jamie%40example.com", "j***%40example.com"),  # URL-encoded, as in a query string
        ("jamie＠example.com", "j***＠example.com"),  # a full-width at sign
    ],
)
def test_email_masking_covers_rfc5322_and_international_addresses(
    address: str, masked: str
) -> None:
    for text, expected in [
        (address, masked),
        (f"to <{address}>, cc {address}.", f"to <{masked}>, cc {masked}."),
        (f'{{"email": "{address}"}}', f'{{"email": "{masked}"}}'),
    ]:
        out = logs.redact(text)
        assert address not in out
        assert out == expected


def test_two_addresses_without_a_separator_are_both_masked() -> None:
    """The second address's local part is glued to the first one's domain: masking the
    overlap (domain included) beats letting "b@y.com" through."""
    out = logs.redact("a@x.comb@y.com")
    assert "b@y.com" not in out and "comb" not in out


def test_email_masking_is_idempotent_and_leaves_plain_text_alone() -> None:
    text = "j***@example.com wrote @ 10:00 to @support; x = a @ b; see https://x.test/a?b=c"
    assert logs.redact(text) == text
    assert logs.redact(logs.redact("josé@example.com")) == "j***@example.com"


def test_a_huge_atext_run_is_masked_in_linear_time() -> None:
    """A base64 blob is all atext: scanning must not be quadratic (no timing: 1 MiB would
    take hours with a backtracking pattern, so the test would time out)."""
    blob = "A" * (1 << 20)
    out = logs.redact(f"{blob}@example.com {blob} {blob}@")
    assert out.startswith("A***@example.com ")
    assert blob not in out.split(" ")[0]


_ATEXT = "abcxyzABCXYZ0189!#$%&'*+/=?^_`{|}~-"
_local_chars = st.one_of(
    st.sampled_from(_ATEXT),
    st.characters(categories=["L", "M", "N"], min_codepoint=128),
)
_label_chars = st.one_of(
    st.sampled_from("abcxyz0189-"),
    st.characters(categories=["L", "M", "N"], min_codepoint=128),
)
_labels = st.text(_label_chars, min_size=1, max_size=12)


@st.composite
def _emails(draw: st.DrawFn) -> str:
    atoms = draw(st.lists(st.text(_local_chars, min_size=1, max_size=12), min_size=1, max_size=3))
    local = ".".join(atoms)
    # Already masked, or made of the mask itself: nothing left to hide, and masking is
    # idempotent, so these come out as they went in.
    assume(re.fullmatch(r"\*{1,3}|.\*{3}", local) is None)
    domain = ".".join(draw(st.lists(_labels, min_size=1, max_size=3)))
    return f"{local}@{domain}"


@given(
    address=_emails(),
    before=st.sampled_from(["", " ", "to ", "<", "(", "'", '"', "email: ", "\n", "«", "、"]),
    after=st.sampled_from(["", " ", ">", ")", "'", '"', ".", ",", "\n", "»", "。"]),
)
@settings(max_examples=400, deadline=None)
@example(address="josé@example.com", before="", after="")
@example(address="o'brien@example.com", before="'", after="'")
def test_no_email_survives_masking_in_full(address: str, before: str, after: str) -> None:
    out = logs.redact(f"log line {before}{address}{after} end")
    assert address not in out
    assert "***" in out
