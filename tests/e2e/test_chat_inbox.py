"""The staff inbox over HTTP against the real daemon: sign-in (same answer for unknown e-mail
and wrong password, the slowdown, cookie flags), CSRF, location access, replies (to the open
page, else one SMS, never to an opted-out number), state actions, booking confirmation,
pause/resume."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from leadd.conversations import staff
from leadd.daemon import Daemon
from tests.e2e.chat_support import (
    AGENT,
    MANAGER,
    PASSWORD,
    UPTOWN_AGENT,
    Client,
    chat_config,
    csrf_of,
    token_of,
)
from tests.e2e.outreach_support import PHONE, cycle, order_payload, post_order, sql
from tests.fakes.twilio import FakeTwilio
from tests.helpers import base_url, running_daemon, wait_for


@dataclass
class Setup:
    daemon: Daemon
    url: str  # the database
    lead: str  # a downtown lead whose first SMS went out
    path: str  # its chat page
    client: Client


@pytest.fixture
async def inbox(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> AsyncIterator[Setup]:
    cfg = chat_config(database_url, twilio)
    async with running_daemon(cfg) as daemon:
        lead = await post_order(http, base_url(daemon), order_payload())
        await wait_for(lambda: twilio.messages)
        client = Client(base_url(daemon))
        try:
            yield Setup(daemon, database_url, lead, f"/c/{token_of(daemon.config, lead)}", client)
        finally:
            await client.close()


async def _rows(url: str, query: str) -> list[tuple[object, ...]]:
    return [tuple(r.values()) for r in await sql(url, query)]


async def test_nothing_in_the_inbox_without_signing_in(inbox: Setup) -> None:
    c, lead = inbox.client, inbox.lead
    for path in ("/inbox", f"/inbox/leads/{lead}"):
        status, _, headers = await c.get(path)
        assert status == 303 and headers["Location"] == "/inbox/sign-in", path
    for path in ("/inbox/list", f"/inbox/leads/{lead}/timeline", "/inbox/events"):
        status, page, _ = await c.get(path)
        assert status == 401 and "Jamie" not in page, path
    for action, form in (("reply", {"body": "hi"}), ("state", {"state": "lost", "reason": "x"})):
        status, _, _ = await c.post(f"/inbox/leads/{lead}/{action}", form)
        assert status == 401
    # A session cookie that is not one: the same.
    c.session.cookie_jar.update_cookies({"leadd_staff": "forged"})
    assert (await c.get("/inbox"))[0] == 303
    assert await _rows(inbox.url, "SELECT id FROM chat_messages WHERE author IS NOT NULL") == []
    [state] = await _rows(inbox.url, "SELECT state FROM leads")
    assert state == ("contacted",)


async def test_sign_in_answers_alike_for_unknown_email_and_wrong_password_then_slows_down(
    inbox: Setup,
) -> None:
    """Same status and text for an unknown e-mail and a wrong password; after ACCOUNT_LIMIT
    failures even the right password waits (429), for a known and an unknown e-mail alike;
    another account is not affected."""
    c = inbox.client
    answers = []
    for email, password in ((AGENT, "wrong password!"), ("nobody@acme.example", PASSWORD)):
        status, page, _ = await c.sign_in(email, password)
        answers.append((status, page.replace(email, "EMAIL")))
    assert answers[0] == answers[1] and answers[0][0] == 401
    assert "Wrong e-mail or password." in answers[0][1]
    for _ in range(staff.ACCOUNT_LIMIT - 1):
        await c.sign_in(AGENT, "wrong password!")
        await c.sign_in("nobody@acme.example", "whatever it is")
    for email in (AGENT, "nobody@acme.example"):
        status, page, _ = await c.sign_in(email, PASSWORD)
        assert status == 429 and "Too many failed sign-ins" in page
    status, _, headers = await c.sign_in(MANAGER)
    assert status == 303 and headers["Location"] == "/inbox"
    # Per address too: many accounts tried from one address slow that address down.
    for i in range(staff.ADDRESS_LIMIT):
        await c.sign_in(f"guess{i}@acme.example", "guessing away")
    status, page, _ = await c.sign_in(UPTOWN_AGENT)
    assert status == 429 and "Too many failed sign-ins" in page


async def test_session_cookie_flags_csrf_and_sign_out(inbox: Setup) -> None:
    c = inbox.client
    status, _, headers = await c.sign_in(AGENT)
    cookie = headers["Set-Cookie"]
    assert status == 303 and "leadd_staff=" in cookie
    for flag in ("HttpOnly", "SameSite=Lax", "Secure", "Path=/inbox"):
        assert flag in cookie, flag  # Secure: public_url is https
    status, page, _ = await c.get("/inbox")
    assert status == 200 and "Jamie Rivera" in page
    csrf = csrf_of(page)
    lead = inbox.lead
    form = {"state": "lost", "reason": "went elsewhere"}
    for bad in ({}, {"csrf": "0" * 32}, {"csrf": csrf + "0"}):
        status, page, _ = await c.post(f"/inbox/leads/{lead}/state", {**form, **bad})
        assert status == 403 and "Nothing was changed" in page
    assert await _rows(inbox.url, "SELECT state FROM leads") == [("contacted",)]
    # The sign-in form needs its own token too.
    status, page, _ = await c.post("/inbox/sign-in", {"email": AGENT, "password": PASSWORD})
    assert status == 403
    status, _, headers = await c.post("/inbox/sign-out", {"csrf": csrf})
    assert status == 303 and headers["Location"] == "/inbox/sign-in"
    assert (await c.get("/inbox"))[0] == 303
    assert await _rows(inbox.url, "SELECT email FROM staff_sessions") == []


async def test_an_agent_cannot_see_or_act_on_another_locations_conversation(
    inbox: Setup, http: aiohttp.ClientSession
) -> None:
    uptown = order_payload(phone="+13125550177", first_name="Ursula")
    uptown["data"]["locationId"] = "loc-sm-2"
    other = await post_order(http, base_url(inbox.daemon), uptown)
    await wait_for(
        lambda: _rows(inbox.url, "SELECT id FROM chat_messages WHERE lead_id IS NOT NULL")
    )
    await wait_for(lambda: _count(inbox.url, 2))
    c = inbox.client
    await c.sign_in(AGENT)
    _, page, _ = await c.get("/inbox")
    assert "Jamie" in page and "Ursula" not in page
    csrf = csrf_of(page)
    status, page, _ = await c.get(f"/inbox/leads/{other}")
    assert status == 404 and "Ursula" not in page
    for action, form in (
        ("reply", {"body": "hi"}),
        ("state", {"state": "lost", "reason": "x"}),
        ("pause", {}),
        ("assign", {}),
        ("appointments/1/confirm", {}),
    ):
        status, _, _ = await c.post(f"/inbox/leads/{other}/{action}", {**form, "csrf": csrf})
        assert status == 404, action
    assert (await c.get(f"/inbox/leads/{other}/timeline"))[0] == 404
    assert (await c.get(f"/inbox/leads/{uuid.uuid4()}"))[0] == 404
    assert (await c.get("/inbox/leads/not-a-uuid"))[0] == 404
    assert await _rows(inbox.url, "SELECT * FROM conversations") == []
    assert await _rows(inbox.url, "SELECT id FROM chat_messages WHERE author IS NOT NULL") == []
    # Asking for the other location's list shows the agent's own (nothing leaks).
    _, page, _ = await c.get("/inbox", params={"location": "uptown"})
    assert "Ursula" not in page and "Jamie" in page and 'id="location"' not in page
    # The uptown agent and the manager see it; the manager can narrow to one location.
    for email in (UPTOWN_AGENT, MANAGER):
        other_client = Client(base_url(inbox.daemon))
        try:
            await other_client.sign_in(email)
            status, page, _ = await other_client.get(f"/inbox/leads/{other}")
            assert status == 200 and "Ursula" in page
            if email == MANAGER:
                _, page, _ = await other_client.get("/inbox", params={"location": "uptown"})
                assert "Ursula" in page and "Jamie" not in page and 'id="location"' in page
        finally:
            await other_client.close()


async def _count(url: str, n: int) -> bool:
    return len(await sql(url, "SELECT DISTINCT lead_id FROM chat_messages")) >= n


async def test_reply_with_the_page_closed_goes_as_one_sms_and_never_to_an_opted_out_number(
    inbox: Setup, twilio: FakeTwilio
) -> None:
    """The ops staff-message path: a kind='staff' touch point with the body and the person as
    author, sent by the send loop; its one transcript line is the sent SMS (with its sid)."""
    c = inbox.client
    await c.sign_in(AGENT)
    csrf = await c.csrf(f"/inbox/leads/{inbox.lead}")
    status, _, headers = await c.post(
        f"/inbox/leads/{inbox.lead}/reply", {"body": "We can fit you in at 3.", "csrf": csrf}
    )
    assert status == 303 and "sent=sms" in headers["Location"]
    await wait_for(lambda: len(twilio.messages) == 2)
    sms = twilio.messages[1]
    assert (sms["to"], sms["body"]) == (PHONE, "We can fit you in at 3.")
    await wait_for(lambda: _provider_id(inbox.url, sms["sid"]))  # one line, with its sid
    [line] = await sql(inbox.url, "SELECT * FROM chat_messages WHERE author IS NOT NULL")
    assert (line["author"], line["channel"], line["body"]) == (
        f"staff:{AGENT}",
        "sms",
        "We can fit you in at 3.",
    )
    [tp] = await sql(inbox.url, "SELECT * FROM touch_points WHERE kind = 'staff'")
    assert (tp["state"], tp["author"], tp["provider_id"]) == ("sent", f"staff:{AGENT}", sms["sid"])
    _, page, _ = await c.get(f"/inbox/leads/{inbox.lead}")
    assert page.count("We can fit you in at 3.") == 1 and "Alex Kim" in page
    assert "Sent by text message." not in page

    # Opted out: refused, nothing stored, nothing sent.
    await sql(
        inbox.url,
        "INSERT INTO contact_optouts VALUES ($1, 'sms', $2, 'keyword')",
        inbox.daemon.config.tenant.id,
        PHONE,
    )
    status, page, _ = await c.post(
        f"/inbox/leads/{inbox.lead}/reply", {"body": "Still there?", "csrf": csrf}
    )
    assert status == 409 and "opted out" in page and "Still there?" in page  # draft kept
    assert len(await sql(inbox.url, "SELECT id FROM touch_points WHERE kind = 'staff'")) == 1
    assert len(await sql(inbox.url, "SELECT id FROM chat_messages WHERE author IS NOT NULL")) == 1
    await cycle(inbox.daemon)
    assert len(twilio.messages) == 2


async def _provider_id(url: str, sid: str) -> bool:
    rows = await sql(url, "SELECT provider_id FROM chat_messages WHERE provider_id = $1", sid)
    return len(rows) == 1


async def test_a_stop_arriving_after_a_reply_was_queued_stops_it_at_the_gate(
    inbox: Setup, twilio: FakeTwilio
) -> None:
    """The queued staff SMS goes through the send gate: an opt-out recorded between queueing
    and sending cancels it, and the inbox shows it as not sent (one line, no transcript)."""
    store = inbox.daemon.db
    assert store is not None
    queued = await store.add_staff_message(
        uuid.UUID(inbox.lead), body="On our way", author=f"staff:{AGENT}",
        now=dt.datetime.now(dt.UTC),
    )  # fmt: skip
    assert queued is not None and queued.touch_point_id is not None
    c = inbox.client
    await c.sign_in(AGENT)
    _, page, _ = await c.get(f"/inbox/leads/{inbox.lead}")
    assert "On our way" in page and "sending…" in page  # queued: shown at once
    await sql(
        inbox.url,
        "INSERT INTO contact_optouts VALUES ($1, 'sms', $2, 'keyword')",
        inbox.daemon.config.tenant.id,
        PHONE,
    )
    await cycle(inbox.daemon)
    assert len(twilio.messages) == 1  # the first SMS only
    [tp] = await sql(inbox.url, "SELECT * FROM touch_points WHERE kind = 'staff'")
    assert (tp["state"], tp["last_error"]) == ("cancelled", "sms opted out")
    assert await sql(inbox.url, "SELECT id FROM chat_messages WHERE author IS NOT NULL") == []
    _, page, _ = await c.get(f"/inbox/leads/{inbox.lead}")
    assert page.count("On our way") == 1 and "not sent: sms opted out" in page


async def test_reply_while_the_page_is_open_shows_there_and_sends_no_sms(
    inbox: Setup, twilio: FakeTwilio
) -> None:
    c = inbox.client
    status, _, _ = await c.get(inbox.path)  # the customer has the page open
    assert status == 200
    await c.sign_in(MANAGER)
    csrf = await c.csrf(f"/inbox/leads/{inbox.lead}")
    status, _, headers = await c.post(
        f"/inbox/leads/{inbox.lead}/reply", {"body": "Hello <b>Jamie</b>", "csrf": csrf}
    )
    assert status == 303 and "sent=web" in headers["Location"]
    [line] = await sql(inbox.url, "SELECT * FROM chat_messages WHERE author IS NOT NULL")
    assert (line["channel"], line["author"]) == ("web", f"staff:{MANAGER}")
    _, page, _ = await c.get(inbox.path + "/thread")
    assert "Max · Acme Auto Care Downtown" in page and "Hello &lt;b&gt;Jamie&lt;/b&gt;" in page
    assert len(twilio.messages) == 1
    assert await sql(inbox.url, "SELECT * FROM touch_points WHERE kind = 'staff'") == []


async def test_state_actions_follow_the_lifecycle_and_record_who_and_why(inbox: Setup) -> None:
    """The ops use case set_state: the lifecycle's rule, the reason and the person as actor on
    the timeline; a terminal state cancels the automated steps (and has nothing to pause)."""
    c = inbox.client
    await c.sign_in(AGENT)
    lead = inbox.lead
    csrf = await c.csrf(f"/inbox/leads/{lead}")
    post = lambda action, form: c.post(f"/inbox/leads/{lead}/{action}", {**form, "csrf": csrf})  # noqa: E731
    status, page, _ = await post("state", {"state": "lost"})
    assert status == 400 and "say why" in page
    status, page, _ = await post("state", {"state": "engaged"})
    assert status == 400 and "expected one of" in page
    assert (await post("state", {"state": "qualified"}))[0] == 303
    status, page, _ = await post("state", {"state": "qualified"})
    assert status == 409 and "Lead is qualified" in page
    assert (await post("state", {"state": "lost", "reason": "bought elsewhere"}))[0] == 303
    events = await sql(inbox.url, "SELECT * FROM lead_events WHERE cause = 'ops.state' ORDER BY id")
    assert [(e["from_state"], e["to_state"], e["actor"]) for e in events] == [
        ("contacted", "qualified", f"staff:{AGENT}"),
        ("qualified", "lost", f"staff:{AGENT}"),
    ]
    assert json.loads(events[0]["detail"]) == {"reason": "set in the inbox"}
    assert json.loads(events[1]["detail"]) == {"reason": "bought elsewhere"}
    [later] = await sql(
        inbox.url, "SELECT state, last_error FROM touch_points WHERE step_index = 1"
    )
    assert (later["state"], later["last_error"]) == ("cancelled", "lead lost")
    status, page, _ = await post("state", {"state": "completed"})
    assert status == 409 and "Lead is lost" in page
    status, page, _ = await post("pause", {})
    assert status == 409 and "no sequence to pause" in page
    _, page, _ = await c.get(f"/inbox/leads/{lead}")
    assert "bought elsewhere" in page and "Alex Kim" in page  # the history names the actor


async def test_confirming_a_requested_time_sets_the_appointment(inbox: Setup) -> None:
    c = inbox.client
    _, page, _ = await c.get(inbox.path)
    slot = re.findall(r'<option value="(\d{4}-[^"]+)"', page)[0]
    assert (await c.post(inbox.path + "/appointment", {"slot": slot}))[0] == 303
    await c.sign_in(AGENT)
    _, page, _ = await c.get("/inbox")
    assert "Time requested" in page
    _, page, _ = await c.get(f"/inbox/leads/{inbox.lead}")
    [(request_id,)] = await _rows(inbox.url, "SELECT id FROM appointment_requests")
    confirm = f"/inbox/leads/{inbox.lead}/appointments/{request_id}/confirm"
    assert confirm in page
    status, _, _ = await c.post(confirm, {"csrf": csrf_of(page)})
    assert status == 303
    assert await _rows(inbox.url, "SELECT state FROM leads") == [("appointment_set",)]
    assert await _rows(inbox.url, "SELECT status, confirmed_by FROM appointment_requests") == [
        ("confirmed", f"staff:{AGENT}")
    ]
    status, page, _ = await c.post(confirm, {"csrf": csrf_of(page)})  # twice: nothing waits
    assert status == 409
    _, page, _ = await c.get(inbox.path)
    assert "Confirmed: we will see you" in page


async def test_pause_stops_the_sequence_and_resume_restarts_from_the_next_step(
    inbox: Setup,
) -> None:
    """The ops use cases pause and resume (leads.paused_at), with the person as actor: a step
    that came due while paused is skipped on resume, not sent late."""
    c = inbox.client
    await c.sign_in(AGENT)
    lead = inbox.lead
    csrf = await c.csrf(f"/inbox/leads/{lead}")
    assert (await c.post(f"/inbox/leads/{lead}/pause", {"csrf": csrf}))[0] == 303
    paused = "SELECT paused_at IS NOT NULL FROM leads"
    step = "SELECT state, last_error FROM touch_points WHERE step_index = 1"
    assert await _rows(inbox.url, paused) == [(True,)]
    assert await _rows(inbox.url, step) == [("scheduled", None)]  # held by the claim, kept
    _, page, _ = await c.get(f"/inbox/leads/{lead}")
    assert "Resume automated messages" in page and "paused by Alex Kim" in page
    assert (await c.post(f"/inbox/leads/{lead}/resume", {"csrf": csrf}))[0] == 303
    assert await _rows(inbox.url, paused) == [(False,)]
    assert await _rows(inbox.url, step) == [("scheduled", None)]
    await c.post(f"/inbox/leads/{lead}/pause", {"csrf": csrf})
    await sql(
        inbox.url,
        "UPDATE touch_points SET due_at = (SELECT paused_at FROM leads) + interval '1 ms' "
        "WHERE step_index = 1",
    )
    await c.post(f"/inbox/leads/{lead}/resume", {"csrf": csrf})
    assert await _rows(inbox.url, step) == [("skipped", "came due while the lead was paused")]
    assert (await c.post(f"/inbox/leads/{lead}/assign", {"csrf": csrf}))[0] == 303
    assert await _rows(inbox.url, "SELECT assigned_to FROM conversations") == [(AGENT,)]
    causes = await _rows(
        inbox.url, "SELECT cause, actor FROM lead_events WHERE cause LIKE 'ops.%' ORDER BY id"
    )
    me = f"staff:{AGENT}"
    assert causes == [
        ("ops.paused", me), ("ops.resumed", me), ("ops.paused", me), ("ops.resumed", me)
    ]  # fmt: skip


async def test_list_is_unread_first_and_searchable_by_name_and_phone(
    inbox: Setup, http: aiohttp.ClientSession
) -> None:
    second = await post_order(
        http, base_url(inbox.daemon), order_payload(phone="+13125550188", first_name="Zed")
    )
    await wait_for(lambda: _count(inbox.url, 2))
    c = inbox.client
    await c.sign_in(AGENT)
    _, page, _ = await c.get("/inbox")
    assert page.index("Zed") < page.index("Jamie")  # newest activity first, nothing unread
    await c.post(inbox.path + "/messages", {"body": "any news?"})
    _, page, _ = await c.get("/inbox")
    assert page.index("Jamie") < page.index("Zed") and "New" in page  # unread first
    await c.get(f"/inbox/leads/{inbox.lead}")  # reading marks it read
    _, page, _ = await c.get("/inbox")
    assert page.index("Jamie") < page.index("Zed")  # still latest activity, no longer unread
    assert '<span class="badge new">' not in page
    for q, present, absent in (
        ("zed", "Zed", "Jamie"),
        ("555-0188", "Zed", "Jamie"),
        ("jamie riv", "Jamie", "Zed"),
        ("%", None, None),
        ("_", None, None),
    ):
        status, page, _ = await c.get("/inbox", params={"q": q})
        assert status == 200
        if present:
            assert present in page and absent not in page, q
        else:
            assert "No conversation matches" in page, q  # LIKE wildcards are literal
    assert second
