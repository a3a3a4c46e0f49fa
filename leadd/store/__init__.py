"""The typed gateway to PostgreSQL: the only code that runs SQL.

`Store` is one object per tenant composed of parts, one per area (core: pool, schema, config
mirror; ops: reading and steering leads; conversations, inbox, staff, events: the chat page,
the staff inbox, its sign-in and live updates). Each part has one method per operation, keyword
parameters and frozen dataclasses out (`store/models.py`); the tenant is bound when the store
is opened. `opened(cfg)` is how a command outside the daemon gets one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from leadd.config import Config
from leadd.embedded import EmbeddedPostgres
from leadd.store.conversations import ConversationStore
from leadd.store.core import StoreCore, create_pool, migrate
from leadd.store.events import EventStore
from leadd.store.inbound import InboundStore
from leadd.store.inbox import InboxStore
from leadd.store.intake import IntakeStore
from leadd.store.ops import OpsStore
from leadd.store.outreach import OutreachStore
from leadd.store.staff import StaffStore

# What a lost, refused or failing database raises through the store. InternalClientError:
# asyncpg's protocol when the server cut a pooled connection that the pool had not noticed.
DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    TimeoutError,
)


class Store(
    ConversationStore,
    InboundStore,
    InboxStore,
    StaffStore,
    EventStore,
    IntakeStore,
    OutreachStore,
    OpsStore,
    StoreCore,
):
    """Every store part over one pool, bound to one tenant."""


@asynccontextmanager
async def opened(cfg: Config, *, sync: bool = False) -> AsyncIterator[tuple[Store, list[int]]]:
    """For commands run beside (or without) the daemon: the configured database (the embedded
    server under state_dir when none is configured), the schema brought up to date as
    `leadd run` does at start-up, and with `sync` the YAML mirrored. Yields the store and the
    schema versions applied now."""
    embedded = None
    url = cfg.database.url
    if url is None:
        embedded = EmbeddedPostgres(cfg.state_dir)
        url = await embedded.start()
    try:
        pool = await create_pool(url, min_size=1, max_size=2, timeout=cfg.database.connect_timeout)
        try:
            async with pool.acquire() as conn:
                applied = await migrate(conn)
            store = Store(pool, cfg.tenant.id)
            if sync:
                await store.sync_config(cfg)
            yield store, applied
        finally:
            await pool.close()
    finally:
        if embedded is not None:
            await embedded.stop()


__all__ = ["DB_ERRORS", "Store", "opened"]
