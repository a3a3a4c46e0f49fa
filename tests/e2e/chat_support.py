"""Shared pieces of the chat page and inbox tests: a config with two locations and three staff
users, a cookie-keeping client that signs in like a browser, and readers for links and forms."""

from __future__ import annotations

import functools
import re
import uuid
from typing import Any

import aiohttp

from leadd import chatlinks as links
from leadd.config import Config
from leadd.conversations.staff import hash_password
from tests.e2e.outreach_support import outreach_config
from tests.fakes.twilio import FakeTwilio

PASSWORD = "correct horse battery"
AGENT = "agent@acme.example"  # downtown only
UPTOWN_AGENT = "uptown@acme.example"  # uptown only
MANAGER = "boss@acme.example"  # every location
UPTOWN = {
    "id": "uptown",
    "name": "Acme Auto Care Uptown",
    "shopmonkey_location_id": "loc-sm-2",
    "timezone": "America/Chicago",
    "phone": "+15125550111",
    "address": "9 Hill Rd, Austin, TX 78702",
    "hours": {"mon": "08:00-18:00", "tue": "08:00-18:00", "wed": "08:00-18:00"},
}
# Reply-stopping and pausing need steps still scheduled after the first SMS.
SEQUENCE = {
    "default": [
        {
            "name": "ack",
            "channel": "sms",
            "delay": "0s",
            "after": "created",
            "template": "Hi {{ customer.first_name }}! Chat with us: {{ chat.link }}",
        },
        {"name": "later", "channel": "sms", "delay": "1d", "after": "created", "template": "Hey?"},
    ]
}
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)


def staff_section() -> list[dict[str, Any]]:
    h = password_hash()
    return [
        {"email": AGENT, "name": "Alex Kim", "password_hash": h, "locations": ["downtown"]},
        {"email": UPTOWN_AGENT, "name": "Una Lee", "password_hash": h, "locations": ["uptown"]},
        {
            "email": MANAGER,
            "name": "Max Boss",
            "password_hash": h,
            "locations": [],
            "role": "manager",
        },
    ]


def chat_config(database_url: str, twilio: FakeTwilio, **overrides: Any) -> Config:
    from tests.conftest import base_config

    locations = base_config()["locations"] + [UPTOWN]
    overrides.setdefault("touchpoints", {"interval": "1h"})
    overrides.setdefault("sequences", SEQUENCE)
    return outreach_config(
        database_url, twilio, staff=staff_section(), locations=locations, **overrides
    )


def token_of(cfg: Config, lead_id: str | uuid.UUID) -> str:
    """The chat link token of a lead (what the first SMS carries)."""
    return links.chat_token(cfg.chat.secret, cfg.tenant.id, uuid.UUID(str(lead_id)))


def csrf_of(html: str) -> str:
    m = _CSRF.search(html)
    assert m, "no CSRF field on the page"
    return m.group(1)


class Client:
    """An HTTP client that keeps cookies (also Secure ones over plain http, as a browser does
    for a local address) and does not follow redirects, so tests see every 303."""

    def __init__(self, base: str) -> None:
        self.base = base
        jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[base])
        self.session = aiohttp.ClientSession(cookie_jar=jar)
        self.streams: list[aiohttp.ClientResponse] = []  # open event streams, closed with us

    async def close(self) -> None:
        for response in self.streams:
            response.close()
        await self.session.close()

    async def get(self, path: str, **kw: Any) -> tuple[int, str, Any]:
        async with self.session.get(self.base + path, allow_redirects=False, **kw) as r:
            return r.status, await r.text(), r.headers

    async def post(self, path: str, data: Any = None, **kw: Any) -> tuple[int, str, Any]:
        async with self.session.post(self.base + path, data=data, allow_redirects=False, **kw) as r:
            return r.status, await r.text(), r.headers

    async def sign_in(self, email: str, password: str = PASSWORD) -> tuple[int, str, Any]:
        _, page, _ = await self.get("/inbox/sign-in")
        form = {"email": email, "password": password, "csrf": csrf_of(page)}
        return await self.post("/inbox/sign-in", form)

    async def csrf(self, path: str = "/inbox") -> str:
        status, page, _ = await self.get(path)
        assert status == 200, (status, page[:300])
        return csrf_of(page)
