"""Shared fixtures: a PostgreSQL server, a migrated template database, one clone per test.

The server is $LEADD_TEST_DATABASE_URL when set (CI: the machine's PostgreSQL); otherwise an
embedded server (pgserver) started once for the session, so `pytest` works on a new machine.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from leadd import config as configmod
from leadd.store import core as dbmod

ROOT = Path(__file__).resolve().parent.parent
TENANT_ID = "6f1c1c53-3f3e-4d0a-9d7e-0a6b1b1e0001"
# One state_dir for every test config (only the embedded server would write there); removed
# when the test process exits.
_STATE_DIR = tempfile.mkdtemp(prefix="leadd-state-")
atexit.register(shutil.rmtree, _STATE_DIR, True)


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _sql(url: str, *statements: str) -> None:
    """Run statements on one connection (CREATE/DROP DATABASE cannot run in a transaction)."""

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of a maintenance database on a running server."""
    url = os.environ.get("LEADD_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from leadd.embedded import EmbeddedPostgres

    tmp = Path(tempfile.mkdtemp(prefix="leadd-test-pg-"))
    server = EmbeddedPostgres(tmp)
    url = asyncio.run(server.start())
    yield url
    asyncio.run(server.stop())


@pytest.fixture(scope="session")
def template_db(pg_server: str) -> Iterator[str]:
    """A database with the schema applied once; each test clones it."""
    name = f"leadd_tpl_{os.getpid()}"
    _sql(pg_server, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')

    async def migrate() -> None:
        conn = await asyncpg.connect(_with_db(pg_server, name))
        try:
            await dbmod.migrate(conn)
        finally:
            await conn.close()

    asyncio.run(migrate())
    yield name
    _sql(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(pg_server: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test (cloned from the template), dropped after."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    _sql(pg_server, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield _with_db(pg_server, name)
    _sql(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_database_url(pg_server: str) -> Iterator[str]:
    """A fresh database with no schema (for migration tests)."""
    name = f"e_{uuid.uuid4().hex[:12]}"
    _sql(pg_server, f'CREATE DATABASE "{name}"')
    yield _with_db(pg_server, name)
    _sql(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_config(**overrides: Any) -> dict[str, Any]:
    """A realistic config dict for tests; override sections by keyword."""
    cfg: dict[str, Any] = {
        "tenant": {"id": TENANT_ID, "name": "Acme Auto Care"},
        "state_dir": _STATE_DIR,
        "http": {"host": "127.0.0.1", "port": 0, "public_url": "https://leads.example.com"},
        "shopmonkey": {"webhook_secrets": ["test-secret"], "api_key": ""},
        "logging": {"level": "info", "format": "json"},
        "shutdown_timeout": "5s",
        "locations": [
            {
                "id": "downtown",
                "name": "Acme Auto Care Downtown",
                "shopmonkey_location_id": "loc-sm-1",
                "timezone": "America/Chicago",
                "phone": "+15125550100",
                "address": "100 Main St, Austin, TX 78701",
                "hours": {
                    "mon": "08:00-18:00",
                    "tue": "08:00-18:00",
                    "wed": "08:00-18:00",
                    "thu": "08:00-18:00",
                    "fri": "08:00-18:00",
                    "sat": "09:00-13:00",
                    "sun": "closed",
                },
                "services": [
                    {"name": "Oil change", "price": 49.99},
                    {"name": "Brake inspection", "price": 459.0},
                ],
            }
        ],
    }
    cfg.update(overrides)
    return cfg


def make_config(database_url: str | None, **overrides: Any) -> configmod.Config:
    data = base_config(**overrides)
    if database_url:
        data["database"] = {"url": database_url}
    return configmod.build(data, source="test.yaml", env={})


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await dbmod.create_pool(database_url, min_size=1, max_size=5)
    yield p
    await p.close()
