"""JSON logs: one object per line; phones, e-mails and secrets never reach the output."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

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
