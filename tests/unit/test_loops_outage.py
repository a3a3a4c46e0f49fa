"""The loops ride out a PostgreSQL outage (issue 11): a cycle whose queries fail, the first
one included, is logged and tried again after a backoff; the task never crashes into a
supervisor restart (before, a 30 s outage cost the poll and send loops 10 restarts), and it
keeps beating (the watchdog must not have systemd restart a daemon for a database outage,
which a restart cannot mend; /readyz names the database). Each loop runs against a store
whose every call fails as a lost server's do, until it has come back for more several
times; then shutdown ends it cleanly."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from leadd import loops
from leadd.backoff import Backoff
from leadd.loops import enrichment, poll, touchpoints
from leadd.providers.sendgrid import SendGridClient
from leadd.providers.shopmonkey import ShopmonkeyClient
from leadd.providers.twilio import TwilioClient
from leadd.runtime import Runtime
from tests.conftest import make_config

TRIES = 4  # store calls to see before the outage is called survived


class DownStore:
    """Every method fails as an unreachable database does (a refused connection, a server
    starting up), whatever the loop asks for; `tried` is set after TRIES calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.tried = asyncio.Event()

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        async def fail(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if len(self.calls) >= TRIES:
                self.tried.set()
            if len(self.calls) % 2:
                raise ConnectionRefusedError(111, "Connection refused")
            raise asyncpg.CannotConnectNowError("the database system is starting up")

        return fail


def down_runtime(store: DownStore) -> Runtime:
    cfg = make_config(
        None,
        shopmonkey={"api_key": "k", "base_url": "http://127.0.0.1:9/v3", "poll_interval": "10ms"},
        touchpoints={"interval": "1h"},
    )
    return Runtime(
        config=cfg,
        store=store,  # type: ignore[arg-type]
        shopmonkey=ShopmonkeyClient(None, base_url=cfg.shopmonkey.base_url, api_key="k"),
        twilio=TwilioClient(None, base_url="", account_sid="", auth_token=""),
        sendgrid=SendGridClient(None, base_url="", api_key="", from_email="", from_name="Acme"),
        instance_id="test-1",
    )


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backoff's shape is the Backoff tests' business; here it only must not be long."""
    quick = Backoff(base=0.001, cap=0.001, jitter=0.0)
    monkeypatch.setattr(loops, "DB_RETRY", quick)


Beat = Callable[[], None]
LOOPS: dict[str, Callable[[Runtime, asyncio.Event, Beat], Awaitable[None]]] = {
    "poll": lambda rt, stop, beat: poll.run(rt, shutdown=stop, beat=beat),
    "touchpoints": lambda rt, stop, beat: touchpoints.run(
        rt, shutdown=stop, wake_event=asyncio.Event(), beat=beat
    ),
    "enrichment": lambda rt, stop, beat: enrichment.run(
        rt, shutdown=stop, wake_event=asyncio.Event(), beat=beat
    ),
}


@pytest.mark.parametrize("name", sorted(LOOPS))
async def test_a_loop_survives_a_database_outage_from_its_first_query(name: str) -> None:
    store, stop, beats = DownStore(), asyncio.Event(), []
    beat = functools.partial(beats.append, None)
    loop = asyncio.create_task(LOOPS[name](down_runtime(store), stop, beat))
    tried = asyncio.create_task(store.tried.wait())
    done, _ = await asyncio.wait({loop, tried}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    tried.cancel()
    assert loop not in done, f"{name} ended during the outage: {loop.exception()!r}"
    assert store.tried.is_set(), f"{name} stopped asking the database: {store.calls}"
    assert beats, f"{name} went silent: the watchdog would have the daemon restarted"
    stop.set()
    await asyncio.wait_for(loop, timeout=30)  # returns: shutdown ends it, no exception
