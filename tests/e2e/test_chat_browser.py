"""The chat page and the staff inbox in a real browser (Debian's headless Chromium) against a
real `leadd run` with the built-in first SMS, a fake Twilio and PostgreSQL. One daemon and one
browser for the module; each test has its own lead (its own phone number).

Screenshots of both pages at 390x844 and 1280x800 go to tests/output/screenshots/."""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from tests.conftest import _sql, _with_db, base_config, free_port
from tests.e2e.browser_support import (
    ThreadedTwilio,
    have_browser,
    screenshots,
    start_browser,
    stop_browser,
    viewport,
    wait,
)
from tests.e2e.chat_support import AGENT, PASSWORD, UPTOWN, staff_section
from tests.e2e.outreach_support import order_payload, post_order, provider_sections, sql
from tests.fakes.twilio import FakeTwilio
from tests.helpers import DaemonProcess

pytestmark = pytest.mark.skipif(
    not have_browser() and not os.environ.get("CI"), reason="needs chromium and chromedriver"
)
LINK = re.compile(r"https?://\S+/c/[A-Za-z0-9_-]+")


@dataclass
class Stack:
    daemon: DaemonProcess
    twilio: FakeTwilio
    database_url: str
    browser: WebDriver
    customer: str  # window handles
    agent: str

    def db(self, query: str, *args: Any) -> list[Any]:
        return asyncio.run(sql(self.database_url, query, *args))

    def new_lead(
        self, phone: str, first_name: str = "Jamie", location: str = "loc-sm-1"
    ) -> tuple[str, str]:
        """A lead by signed webhook; returns (lead id, the chat link from its first SMS)."""

        async def post() -> str:
            async with aiohttp.ClientSession() as http:
                payload = order_payload(phone=phone, first_name=first_name)
                payload["data"]["locationId"] = location
                return await post_order(http, self.daemon.url, payload)

        lead_id = asyncio.run(post())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the fake records on its own thread
            bodies = [m["body"] for m in self.twilio.messages if m["to"] == phone]
            if bodies:
                match = LINK.search(bodies[0])
                assert match, bodies[0]
                return lead_id, match.group(0)
            time.sleep(0.02)
        raise AssertionError("no first SMS")

    def as_customer(self) -> WebDriver:
        self.browser.switch_to.window(self.customer)
        return self.browser

    def as_agent(self) -> WebDriver:
        self.browser.switch_to.window(self.agent)
        return self.browser


@pytest.fixture(scope="module")
def stack(
    pg_server: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    name = f"b_{uuid.uuid4().hex[:12]}"
    _sql(pg_server, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = _with_db(pg_server, name)
    workdir = tmp_path_factory.mktemp("browser")
    browser, profile = start_browser()
    try:
        with ThreadedTwilio() as twilio:
            port = free_port()
            data = base_config(
                **provider_sections(twilio),
                staff=staff_section(),
                locations=base_config()["locations"] + [UPTOWN],
            )
            data["database"] = {"url": url}
            data["state_dir"] = str(workdir / "state")
            data["http"] = {
                "host": "127.0.0.1",
                "port": port,
                "public_url": f"http://127.0.0.1:{port}",
            }
            daemon = DaemonProcess(data, workdir).start()
            try:
                asyncio.run(daemon.wait_ready())
                customer = browser.current_window_handle
                browser.switch_to.new_window("window")
                agent = browser.current_window_handle
                yield Stack(daemon, twilio, url, browser, customer, agent)
                # Stopping with pages open: their event streams end at once, no timeout.
                assert daemon.terminate() == 0
                assert "cancelling remaining tasks" not in daemon.log()
            finally:
                daemon.kill()
    finally:
        stop_browser(browser, profile)
        _sql(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _signed_in(stack: Stack) -> WebDriver:
    b = stack.as_agent()
    b.get(stack.daemon.url + "/inbox")
    if "/inbox/sign-in" in b.current_url:
        b.find_element(By.ID, "email").send_keys(AGENT)
        b.find_element(By.ID, "password").send_keys(PASSWORD, Keys.ENTER)
        wait(b, lambda d: d.current_url.endswith("/inbox"))
    return b


def _live(b: WebDriver) -> None:
    """The page's event stream is connected; mark the window to prove there is no reload."""
    wait(b, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-live-state"))
    b.execute_script("window.noReload = true")


def _still_same_page(b: WebDriver) -> bool:
    return bool(b.execute_script("return window.noReload === true"))


def _thread_text(b: WebDriver) -> str:
    return str(b.find_element(By.ID, "thread").text)


def test_customer_and_agent_talk_live_and_the_pages_look_right(stack: Stack) -> None:
    """The customer opens the first SMS's link (first name, vehicle, estimate), writes; the
    signed-in agent's open conversation shows it without a reload; the agent replies; the
    customer's page shows it without a reload. Screenshots of both pages at both sizes."""
    lead_id, link = stack.new_lead("+13125550101")
    c = stack.as_customer()
    c.get(link)
    page = c.find_element(By.TAG_NAME, "main").text
    assert "Hi Jamie!" in page and "2016 Honda Civic" in page and "Oil change" in page
    assert "$49.99" in page and "Rivera" not in c.page_source
    _live(c)
    shots = screenshots(c, "chat")

    a = _signed_in(stack)
    assert "Jamie Rivera" in a.find_element(By.ID, "items").text
    a.get(f"{stack.daemon.url}/inbox/leads/{lead_id}")
    _live(a)

    c = stack.as_customer()
    c.find_element(By.ID, "body").send_keys("Can you do Thursday morning?")
    c.find_element(By.CSS_SELECTOR, ".compose button").click()
    wait(c, lambda d: "Can you do Thursday morning?" in _thread_text(d))
    sent = time.monotonic()
    a = stack.as_agent()
    wait(a, lambda d: "Can you do Thursday morning?" in _thread_text(d))
    print(f"customer -> agent page: {(time.monotonic() - sent) * 1000:.0f} ms (after the switch)")
    assert _still_same_page(a)

    c = stack.as_customer()
    _live(c)
    a = stack.as_agent()
    a.find_element(By.ID, "body").send_keys("Thursday 9:00 works. See you!")
    a.find_element(By.CSS_SELECTOR, ".compose button").click()
    wait(a, lambda d: "Shown on the customer's chat page" in d.page_source)
    c = stack.as_customer()
    wait(c, lambda d: "Thursday 9:00 works" in _thread_text(d))
    assert _still_same_page(c)
    assert "Alex · Acme Auto Care Downtown" in _thread_text(c)  # first name of who wrote it
    shots += screenshots(c, "chat-conversation")

    a = stack.as_agent()
    shots += screenshots(a, "inbox-conversation")
    a.get(stack.daemon.url + "/inbox")
    shots += screenshots(a, "inbox-list")
    print("screenshots:", *shots, sep="\n  ")
    assert all(Path(p).stat().st_size > 0 for p in shots)
    _no_csp_violations(stack.browser)


def test_booking_shows_in_the_inbox_and_confirming_sets_the_appointment(stack: Stack) -> None:
    lead_id, link = stack.new_lead("+13125550102", "Robin")
    a = _signed_in(stack)
    _live(a)  # the list page, open
    c = stack.as_customer()
    c.get(link)
    Select(c.find_element(By.ID, "slot")).select_by_index(1)
    c.find_element(By.CSS_SELECTOR, ".book button").click()
    wait(c, lambda d: "We will confirm it shortly" in d.page_source)
    _live(c)

    a = stack.as_agent()
    wait(a, lambda d: "Time requested" in d.find_element(By.ID, "items").text)
    assert _still_same_page(a)
    a.find_element(By.PARTIAL_LINK_TEXT, "Robin").click()
    a.find_element(By.XPATH, "//button[normalize-space()='Confirm this time']").click()
    wait(a, lambda d: "Confirmed by" in d.page_source)
    [lead] = stack.db("SELECT state FROM leads WHERE id = $1", uuid.UUID(lead_id))
    assert lead["state"] == "appointment_set"
    c = stack.as_customer()
    wait(c, lambda d: "Confirmed: we will see you" in d.page_source)


def test_a_script_in_a_message_renders_inert_in_both_pages(stack: Stack) -> None:
    lead_id, link = stack.new_lead("+13125550103", "Sam")
    attack = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
    a = _signed_in(stack)
    a.get(f"{stack.daemon.url}/inbox/leads/{lead_id}")
    _live(a)
    c = stack.as_customer()
    c.get(link)
    c.find_element(By.ID, "body").send_keys(attack)
    c.find_element(By.CSS_SELECTOR, ".compose button").click()
    wait(c, lambda d: attack in _thread_text(d))
    assert c.execute_script("return window.pwned") is None
    a = stack.as_agent()
    wait(a, lambda d: attack in _thread_text(d))  # swapped in live: still text
    assert a.execute_script("return window.pwned") is None
    assert a.find_elements(By.CSS_SELECTOR, "#thread img, #thread script") == []


def test_pages_work_without_javascript_and_by_keyboard_at_360px(stack: Stack) -> None:
    """With scripts disabled the customer still reads and sends (a plain form post). At 360
    px nothing scrolls sideways; every control has a label; Tab reaches the message box."""
    _, link = stack.new_lead("+13125550104", "Kim")
    c = stack.as_customer()
    c.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        c.get(link)
        assert c.find_element(By.TAG_NAME, "body").get_attribute("data-live-state") is None
        c.find_element(By.ID, "body").send_keys("no script here")
        c.find_element(By.CSS_SELECTOR, ".compose button").click()
        wait(c, lambda d: "no script here" in _thread_text(d))
    finally:
        c.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})
    for window, url in ((stack.customer, link), (stack.agent, stack.daemon.url + "/inbox")):
        stack.browser.switch_to.window(window)
        b = stack.browser
        viewport(b, 360, 740, mobile=True)
        b.get(url)
        assert b.execute_script("return document.documentElement.scrollWidth") <= 360, url
        unlabelled = b.execute_script(
            "return [...document.querySelectorAll('input:not([type=hidden]), textarea, select')]"
            ".filter(e => e.labels.length === 0).map(e => e.name)"
        )
        assert unlabelled == [], url
        b.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    c = stack.as_customer()
    c.get(link)
    body = c.find_element(By.TAG_NAME, "body")
    for _ in range(30):
        body = c.switch_to.active_element
        if body.get_attribute("id") == "body":
            break
        body.send_keys(Keys.TAB)
    assert c.switch_to.active_element.get_attribute("id") == "body"


def _no_csp_violations(browser: WebDriver) -> None:
    logs = browser.get_log("browser")
    assert [e for e in logs if "Content Security Policy" in e.get("message", "")] == []


def test_inbox_guards_sign_in_csrf_and_other_locations(stack: Stack) -> None:
    """Signed out, the inbox shows the sign-in form; a form posted without its CSRF token
    changes nothing; an agent opening another location's conversation gets "not found"."""
    lead_id, _ = stack.new_lead("+13125550105", "Casey")
    other_id, _ = stack.new_lead("+13125550106", "Uma", location="loc-sm-2")
    a = _signed_in(stack)
    a.find_element(By.XPATH, "//button[normalize-space()='Sign out']").click()
    for path in ("/inbox", f"/inbox/leads/{lead_id}"):
        a.get(stack.daemon.url + path)
        assert a.current_url.endswith("/inbox/sign-in") and "Casey" not in a.page_source
    a = _signed_in(stack)
    a.get(f"{stack.daemon.url}/inbox/leads/{lead_id}")
    a.execute_script("document.querySelector('form.compose input[name=csrf]').remove()")
    a.find_element(By.ID, "body").send_keys("forged?")
    a.find_element(By.CSS_SELECTOR, ".compose button").click()
    wait(a, lambda d: "This form has expired" in d.page_source)
    assert stack.db("SELECT id FROM chat_messages WHERE body = 'forged?'") == []
    a.get(f"{stack.daemon.url}/inbox/leads/{other_id}")
    assert "Conversation not found" in a.page_source and "Uma" not in a.page_source
    a.get(stack.daemon.url + "/inbox")
    assert "Uma" not in a.find_element(By.ID, "items").text


def test_a_reply_with_the_page_closed_goes_as_one_sms_never_to_an_opted_out_number(
    stack: Stack,
) -> None:
    phone = "+13125550107"
    lead_id, _ = stack.new_lead(phone, "Dana")  # the customer never opens the page
    a = _signed_in(stack)
    a.get(f"{stack.daemon.url}/inbox/leads/{lead_id}")
    a.find_element(By.ID, "body").send_keys("Your car is ready.")
    a.find_element(By.CSS_SELECTOR, ".compose button").click()
    wait(a, lambda d: "Sent by text message." in d.page_source)
    texts = lambda: [m["body"] for m in stack.twilio.messages if m["to"] == phone]  # noqa: E731
    wait(a, lambda d: len(texts()) == 2)
    assert texts()[1] == "Your car is ready."
    stack.db(
        "INSERT INTO contact_optouts (tenant_id, channel, address, reason) "
        "SELECT tenant_id, 'sms', $1, 'keyword' FROM leads WHERE id = $2",
        phone,
        uuid.UUID(lead_id),
    )
    a.find_element(By.ID, "body").send_keys("Hello again?")
    a.find_element(By.CSS_SELECTOR, ".compose button").click()
    wait(a, lambda d: "opted out of text messages" in d.page_source)
    assert len(texts()) == 2
