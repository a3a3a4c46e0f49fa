"""The customer's chat page over HTTP against the real daemon: what it shows (and never shows),
unknown and expired links, posting (limits, bad input), booking, and the headers every page
carries. The browser tests (test_chat_browser.py) cover the same page in Chromium."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from leadd.conversations import booking, replies
from tests.e2e.chat_support import Client, chat_config, token_of
from tests.e2e.outreach_support import PHONE, order_payload, post_order, sql
from tests.fakes.twilio import FakeTwilio
from tests.helpers import base_url, running_daemon, wait_for


@pytest.fixture
async def chat(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[Client, str, str]]:
    """A daemon with one lead whose first SMS went out: (client, lead id, link path)."""
    cfg = chat_config(database_url, twilio)
    async with running_daemon(cfg) as daemon:
        lead_id = await post_order(
            http, base_url(daemon), order_payload(email="jamie.rivera@example.com")
        )
        await wait_for(lambda: twilio.messages)
        client = Client(base_url(daemon))
        try:
            yield client, lead_id, f"/c/{token_of(daemon.config, lead_id)}"
        finally:
            await client.close()


async def test_first_sms_carries_a_link_to_a_page_with_first_name_vehicle_and_estimate(
    chat: tuple[Client, str, str], twilio: FakeTwilio
) -> None:
    """The link in the first SMS opens the page: first name, vehicle, estimate from the
    catalog, the shop's phone as a tel: link, today's hours, the SMS itself. No last name,
    phone number or e-mail of the customer anywhere in it."""
    client, _, path = chat
    assert twilio.messages[0]["body"].endswith(f"https://leads.example.com{path}")
    status, page, headers = await client.get(path)
    assert status == 200
    assert "Hi Jamie!" in page and "2016 Honda Civic" in page
    assert "Oil change" in page and "$49.99" in page
    assert 'href="tel:+15125550100"' in page and "(512) 555-0100" in page
    assert "Today:" in page and "100 Main St" in page
    assert "Chat with us: (this page)" in page  # the first SMS, its link shown as this page
    for private in ("Rivera", "rivera@", PHONE, PHONE[2:], "555-0123"):
        assert private not in page
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
    assert headers["Referrer-Policy"] == "no-referrer"  # the token must not leak onwards
    assert headers["Cache-Control"] == "no-store"
    assert "<script>" not in page and "style=" not in page  # nothing inline for the CSP to allow


async def test_unknown_malformed_and_expired_links_get_a_friendly_page_and_no_lead_data(
    chat: tuple[Client, str, str], database_url: str
) -> None:
    client, lead_id, path = chat
    for bad in ("/c/" + "A" * 43, "/c/short", "/c/" + "x" * 300, "/c/%3Cscript%3E"):
        status, page, _ = await client.get(bad)
        assert status == 404, bad
        assert "does not work" in page and "tel:+15125550100" in page and "Jamie" not in page
        status, _, _ = await client.post(bad + "/messages", {"body": "hello"})
        assert status == 404
    await sql(
        database_url,
        "UPDATE chat_sessions SET expires_at = now() - interval '1 second' WHERE lead_id = $1",
        uuid.UUID(lead_id),
    )
    status, page, _ = await client.get(path)
    assert status == 410 and "expired" in page and "Jamie" not in page and "Civic" not in page
    assert "tel:+15125550100" in page
    for suffix, form in (("/messages", {"body": "hi"}), ("/appointment", {"slot": "x"})):
        status, _, _ = await client.post(path + suffix, form)
        assert status == 410
    status, _, _ = await client.get(path + "/events")
    assert status == 410
    inbound = await sql(database_url, "SELECT * FROM chat_messages WHERE direction = 'inbound'")
    assert inbound == []


async def test_a_message_is_stored_as_the_customers_engages_the_lead_and_stops_the_sequence(
    chat: tuple[Client, str, str], database_url: str
) -> None:
    """Exactly what an SMS reply does: engaged (with its timeline row), scheduled automated
    steps cancelled 'customer replied'."""
    client, lead_id, path = chat
    status, _, headers = await client.post(path + "/messages", {"body": "  Is Tuesday OK?  "})
    assert status == 303 and headers["Location"] == f"{path}#latest"
    [msg] = await sql(database_url, "SELECT * FROM chat_messages WHERE direction = 'inbound'")
    # The customer's own line: inbound, no author (authors are people at the shop, 0006).
    assert (msg["author"], msg["channel"], msg["body"]) == (None, "web", "Is Tuesday OK?")
    assert msg["address"] is None and msg["session_id"] is not None
    [lead] = await sql(database_url, "SELECT state FROM leads")
    assert lead["state"] == "engaged"
    [event] = await sql(database_url, "SELECT * FROM lead_events WHERE to_state = 'engaged'")
    assert (event["from_state"], event["cause"]) == ("contacted", "chat.message")
    steps = await sql(
        database_url, "SELECT state, last_error FROM touch_points ORDER BY step_index"
    )
    assert [(s["state"], s["last_error"]) for s in steps] == [
        ("sent", None),
        ("cancelled", "customer replied"),
    ]
    status, page, _ = await client.get(path)
    assert "Is Tuesday OK?" in page and page.index("Chat with us:") < page.index("Is Tuesday")


async def test_bad_posts_are_refused_with_a_reason_and_store_nothing(
    chat: tuple[Client, str, str], database_url: str
) -> None:
    client, _, path = chat
    too_long = "x" * (replies.MAX_CUSTOMER_MESSAGE + 1)
    cases = [({"body": "   "}, "Write a message first"), ({"body": too_long}, "up to 1000")]
    cases += [({"body": "a\x00b"}, "cannot be stored"), ({}, "Write a message first")]
    for form, reason in cases:
        status, page, _ = await client.post(path + "/messages", form)
        assert status == 400 and reason in page, form
    status, _, _ = await client.post(
        path + "/messages",
        data=b"body=%ff%fe",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 400
    status, page, _ = await client.post(path + "/appointment", {"slot": "2020-01-01T09:00Z"})
    assert status == 400 and "no longer available" in page
    assert await sql(database_url, "SELECT * FROM chat_messages WHERE direction = 'inbound'") == []
    assert await sql(database_url, "SELECT * FROM appointment_requests") == []
    [lead] = await sql(database_url, "SELECT state FROM leads")
    assert lead["state"] == "contacted"


async def test_posting_is_limited_per_link_per_minute(
    chat: tuple[Client, str, str], database_url: str
) -> None:
    client, _, path = chat
    for i in range(replies.POSTS_PER_MINUTE):
        status, _, _ = await client.post(path + "/messages", {"body": f"message {i}"})
        assert status == 303
    status, page, _ = await client.post(path + "/messages", {"body": "one too many"})
    assert status == 429 and "Wait a minute" in page and "one too many" in page  # draft kept
    rows = await sql(database_url, "SELECT body FROM chat_messages WHERE direction = 'inbound'")
    assert len(rows) == replies.POSTS_PER_MINUTE


async def test_booking_a_slot_stores_a_request_and_qualifies_the_lead(
    chat: tuple[Client, str, str], database_url: str
) -> None:
    client, _, path = chat
    status, page, _ = await client.get(path)
    offered = re.findall(r'<option value="(\d{4}-\d\d-\d\dT\d\d:\d\dZ)"', page)
    assert offered, "no slots offered"
    status, _, _ = await client.post(path + "/appointment", {"slot": offered[0]})
    assert status == 303
    [req] = await sql(database_url, "SELECT * FROM appointment_requests")
    assert req["status"] == "requested" and req["location_id"] == "downtown"
    assert req["slot_start"].strftime("%Y-%m-%dT%H:%MZ") == offered[0]
    assert req["slot_end"] - req["slot_start"] == dt.timedelta(minutes=booking.SLOT_MINUTES)
    [lead] = await sql(database_url, "SELECT state FROM leads")
    assert lead["state"] == "qualified"
    status, page, _ = await client.get(path)
    assert "We will confirm it shortly" in page
    # A second request replaces the first: one request waits at a time.
    await client.post(path + "/appointment", {"slot": offered[1]})
    rows = await sql(database_url, "SELECT status FROM appointment_requests ORDER BY id")
    assert [r["status"] for r in rows] == ["replaced", "requested"]


async def test_html_in_a_message_is_shown_as_text(
    chat: tuple[Client, str, str], database_url: str
) -> None:
    client, _, path = chat
    attack = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    await client.post(path + "/messages", {"body": attack})
    for url in (path, path + "/thread"):
        _, page, _ = await client.get(url)
        assert attack not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=" in page


async def test_static_files_are_versioned_and_cached(chat: tuple[Client, str, str]) -> None:
    client, _, path = chat
    _, page, _ = await client.get(path)
    [css] = re.findall(r'href="(/static/leadd\.css\?v=[0-9a-f]+)"', page)
    status, _, headers = await client.get(css)
    assert status == 200 and headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["Content-Type"].startswith("text/css")
    status, _, _ = await client.get(css, headers={"If-None-Match": headers["ETag"]})
    assert status == 304
    status, _, _ = await client.get("/static/../sql/0001_core.sql")
    assert status == 404
