"""Intake against a real PostgreSQL without a daemon: a Runtime around Store(pool, tenant),
a ShopmonkeyClient pointed at the fake Shopmonkey, and a pinned clock that tests move."""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from leadd.providers.sendgrid import SendGridClient
from leadd.providers.shopmonkey import ShopmonkeyClient
from leadd.providers.twilio import TwilioClient
from leadd.runtime import Runtime
from leadd.store import Store
from tests.conftest import make_config
from tests.fakes.shopmonkey import FakeShopmonkey

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
API_KEY = "sm-test-key"
T0 = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)  # a Monday, 09:00 in Chicago


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order(at: dt.datetime = T0, *, version: int | None = 1, **changes: Any) -> dict[str, Any]:
    """The fixture order with a fresh id, created and updated at `at`, and `changes`."""
    payload = json.loads((FIXTURES / "shopmonkey-webhook-order-insert.json").read_text())
    data: dict[str, Any] = copy.deepcopy(payload["data"])
    data.update(id=str(uuid.uuid4()), createdDate=iso(at), updatedDate=iso(at))
    if version is None:
        del data["meta"]
    else:
        data["meta"] = {"version": version}
    data.update(changes)
    return data


class Clock:
    """The runtime's clock, pinned; tests move it."""

    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now


@dataclass
class Env:
    rt: Runtime
    clock: Clock
    fake: FakeShopmonkey
    pool: asyncpg.Pool
    wakes: list[dt.datetime] = field(default_factory=list)  # of the enrichment lane
    send_wakes: list[dt.datetime] = field(default_factory=list)  # of the send lane

    @property
    def store(self) -> Store:
        return self.rt.store

    async def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(query, *args))

    async def lead(self, lead_id: uuid.UUID) -> asyncpg.Record:
        rows = await self.sql("SELECT * FROM leads WHERE id = $1", lead_id)
        assert rows, f"no lead {lead_id}"
        return rows[0]

    async def events(self, lead_id: uuid.UUID) -> list[tuple[str | None, str, str]]:
        rows = await self.sql(
            "SELECT from_state, to_state, cause FROM lead_events WHERE lead_id = $1 ORDER BY id",
            lead_id,
        )
        return [(r["from_state"], r["to_state"], r["cause"]) for r in rows]

    async def touch_points(self, lead_id: uuid.UUID) -> list[asyncpg.Record]:
        return await self.sql(
            "SELECT * FROM touch_points WHERE lead_id = $1 ORDER BY step_index", lead_id
        )


EnvFactory = Callable[..., Awaitable[Env]]


@pytest.fixture
async def make_env(database_url: str, pool: asyncpg.Pool) -> AsyncIterator[EnvFactory]:
    """`await make_env(**config_overrides)`: a configured store (locations mirrored) and a
    Runtime around it; `instance_id` and `clock` may be given to share one database."""
    async with AsyncExitStack() as stack:
        fake = await stack.enter_async_context(FakeShopmonkey(api_key=API_KEY))

        async def build(
            *, instance_id: str = "test-1", clock: Clock | None = None, **overrides: Any
        ) -> Env:
            shopmonkey = {
                "webhook_secrets": ["test-secret"],
                "api_key": API_KEY,
                "base_url": fake.url,
                "requests_per_second": 1000,
                **overrides.pop("shopmonkey", {}),
            }
            cfg = make_config(database_url, shopmonkey=shopmonkey, **overrides)
            store = Store(pool, cfg.tenant.id)
            await store.sync_config(cfg)
            client = ShopmonkeyClient(
                None,
                base_url=cfg.shopmonkey.base_url,
                api_key=cfg.shopmonkey.api_key,
                requests_per_second=1000,
                max_attempts=2,
                sleep=_no_sleep,
            )
            stack.push_async_callback(client.close)
            env_clock = clock or Clock()
            wakes: list[dt.datetime] = []
            send_wakes: list[dt.datetime] = []
            rt = Runtime(
                config=cfg,
                store=store,
                shopmonkey=client,
                twilio=TwilioClient(None, base_url="", account_sid="", auth_token=""),
                sendgrid=SendGridClient(
                    None, base_url="", api_key="", from_email="", from_name="Acme"
                ),
                instance_id=instance_id,
                clock=env_clock,
                wake=lambda: send_wakes.append(env_clock()),
                wake_enrichment=lambda: wakes.append(env_clock()),
            )
            return Env(rt, env_clock, fake, pool, wakes, send_wakes)

        yield build


@pytest.fixture
async def env(make_env: EnvFactory) -> Env:
    return await make_env()


async def _no_sleep(seconds: float) -> None:
    """Retries in these tests do not wait: what is asserted is what was stored."""
