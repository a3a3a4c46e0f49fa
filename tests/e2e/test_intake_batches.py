"""Group commit at the HTTP level (issue 11): the real daemon, fifty concurrent signed
webhooks, PostgreSQL holding their commits until the test lets go.

Every 200 must be a committed lead (its own, or the order's one lead for a duplicate), no
answer may leave before its lead has committed, and the one order PostgreSQL refuses fails
alone with a 422 while its batch neighbours are stored.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aiohttp
import asyncpg

from leadd.daemon import Daemon
from leadd.providers.shopmonkey_webhook import sign_webhook
from tests.conftest import make_config
from tests.e2e.test_intake import order_event
from tests.helpers import base_url, running_daemon, wait_for

HOLD_KEY = 0x1EADD_C1
# Run at COMMIT (deferred): every commit that created a lead waits for the test's lock.
HOLD_COMMITS = f"""
CREATE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_advisory_xact_lock({HOLD_KEY}); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON leads
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hold_commit();
"""
Delivery = tuple[str, bytes, dict[str, str]]  # (what it is, body, signed headers)


def delivery(kind: str, payload: dict[str, Any]) -> Delivery:
    body = json.dumps(payload).encode()
    headers = sign_webhook(
        body, "test-secret", msg_id=f"msg_{uuid.uuid4().hex}", timestamp=int(time.time())
    )
    return kind, body, {**headers, "Content-Type": "application/json"}


async def post(http: aiohttp.ClientSession, daemon: Daemon, d: Delivery) -> tuple[int, Any]:
    url = f"{base_url(daemon)}/webhooks/shopmonkey/order"
    async with http.post(url, data=d[1], headers=d[2]) as r:
        return r.status, await r.json()


async def test_fifty_concurrent_webhooks_every_200_is_a_committed_lead(database_url: str) -> None:
    """40 new orders, one order delivered 5 times, one delivery replayed 3 times, and one
    order the database refuses (a CHECK constraint), all at once, with every commit held:
    nothing is answered and nothing is visible until the commits go; then the refused one
    is a 422 and every other answer is a 200 naming a lead that is in the database."""
    poison = f"poison-{uuid.uuid4().hex[:8]}"
    fresh = [delivery("new", order_event()) for _ in range(40)]
    twice = order_event()
    copies = [delivery("copy", twice) for _ in range(5)]
    replays = [("replay", *fresh[7][1:])] * 3  # the same signed delivery again
    bad = delivery("bad", order_event(order_id=poison))
    deliveries = fresh[:20] + copies[:3] + [bad] + fresh[20:] + copies[3:] + replays

    async with running_daemon(make_config(database_url)) as daemon:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                f"ALTER TABLE leads ADD CONSTRAINT refuse CHECK (shopmonkey_order_id <> '{poison}')"
            )
            await conn.execute(HOLD_COMMITS)
            await conn.execute("SELECT pg_advisory_lock($1)", HOLD_KEY)
            connector = aiohttp.TCPConnector(limit=len(deliveries))
            async with aiohttp.ClientSession(connector=connector) as http:
                answers = [asyncio.ensure_future(post(http, daemon, d)) for d in deliveries]
                assert daemon.db is not None
                store = daemon.db

                async def all_inside() -> bool:
                    # Every webhook is inside the group commit (written and waiting for its
                    # commit, or queued behind one) or answered: only the refused one can
                    # be, when a write of its own found it before any commit.
                    batches = store._new_leads
                    inside = 0 if batches is None else batches.waiting
                    return inside + sum(a.done() for a in answers) == len(deliveries)

                await wait_for(all_inside)
                early = [a.result()[0] for a in answers if a.done()]
                assert early in ([], [422]), early
                assert await conn.fetchval("SELECT count(*) FROM leads") == 0
                await conn.execute("SELECT pg_advisory_unlock($1)", HOLD_KEY)
                results = await asyncio.gather(*answers)

            by_kind: dict[str, list[tuple[int, Any]]] = {}
            for (kind, _, _), result in zip(deliveries, results, strict=True):
                by_kind.setdefault(kind, []).append(result)
            assert [status for status, _ in by_kind["bad"]] == [422]
            assert all(status == 200 for k, rs in by_kind.items() if k != "bad" for status, _ in rs)
            # One order delivered five times, one delivery four times: one lead each, and
            # exactly one of its answers is not a duplicate.
            first_of_replayed = results[deliveries.index(fresh[7])]
            for group in (by_kind["copy"], [first_of_replayed, *by_kind["replay"]]):
                assert len({a["leadId"] for _, a in group}) == 1
                assert sum("duplicate" not in a for _, a in group) == 1
            new = by_kind["new"]
            assert len({a["leadId"] for _, a in new}) == 40
            assert sum("duplicate" not in a for _, a in new) >= 39

            rows = await conn.fetch("SELECT id::text, shopmonkey_order_id FROM leads")
            stored = {r["id"]: r["shopmonkey_order_id"] for r in rows}
            answered = {a["leadId"] for k, rs in by_kind.items() if k != "bad" for _, a in rs}
            assert answered <= set(stored) and len(stored) == 41  # every 200 is a row
            assert poison not in stored.values()
            assert store._new_leads is not None and store._new_leads.batches >= 1
        finally:
            await conn.close()
