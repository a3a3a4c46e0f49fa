"""Fixtures for the outreach service tests: a Store on a fresh database, a Runtime around it
with a pinned clock, the Twilio client pointed at the fake Twilio (e-mail in dry-run), and
no daemon process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from leadd.config import Config
from leadd.providers.sendgrid import SendGridClient
from leadd.providers.shopmonkey import ShopmonkeyClient
from leadd.providers.twilio import TwilioClient
from leadd.runtime import Runtime
from leadd.store import Store
from tests.e2e.outreach_support import PinnedClock
from tests.fakes.twilio import FakeTwilio
from tests.outreach.support import OWNER, chicago, config


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def cfg(database_url: str, twilio: FakeTwilio) -> Config:
    return config(database_url, twilio)


@pytest.fixture
def clock() -> PinnedClock:
    return PinnedClock(chicago(7, 10))


@pytest.fixture
async def conn(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as c:
        yield c


@pytest.fixture
async def rt(
    pool: asyncpg.Pool, cfg: Config, twilio: FakeTwilio, clock: PinnedClock
) -> AsyncIterator[Runtime]:
    store = Store(pool, cfg.tenant.id)
    await store.sync_config(cfg)  # tenant and locations, as the daemon does at start-up
    async with (
        TwilioClient(
            None,
            base_url=twilio.url,
            account_sid=twilio.account_sid,
            auth_token=twilio.auth_token,
            messages_per_second=1000,
        ) as sms,
        SendGridClient(
            None, base_url="", api_key="", from_email="service@acme.example", from_name="Acme"
        ) as mail,
        ShopmonkeyClient(None, base_url="", api_key="") as shopmonkey,
    ):
        yield Runtime(
            config=cfg,
            store=store,
            shopmonkey=shopmonkey,
            twilio=sms,
            sendgrid=mail,
            instance_id=OWNER,
            clock=clock,
        )
