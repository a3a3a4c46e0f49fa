"""Outreach under concurrency and crashes: two daemons sharing one database, and a `leadd run`
process killed with SIGKILL while its Twilio requests are in flight, then restarted. In both,
every touch point is sent exactly once: no duplicate, no loss."""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from pathlib import Path

import aiohttp

from tests.conftest import free_port, make_config
from tests.e2e.outreach_support import (
    base_with_providers,
    order_payload,
    outreach_config,
    post_order,
    provider_sections,
    sql,
)
from tests.fakes.twilio import FakeTwilio
from tests.helpers import DaemonProcess, base_url, running_daemon, wait_for

ACK = {
    "default": [
        {
            "name": "ack",
            "channel": "sms",
            "delay": "0s",
            "after": "created",
            "template": "Hi {{ customer.first_name }}, thanks for your request!",
        }
    ]
}


def phones(n: int) -> list[str]:
    return [f"+1312555{2000 + i}" for i in range(n)]


async def all_sent(url: str, n: int) -> bool:
    rows = await sql(url, "SELECT state FROM touch_points")
    return len(rows) == n and all(r["state"] == "sent" for r in rows)


async def enriched(url: str, n: int) -> bool:
    rows = await sql(url, "SELECT 1 FROM leads WHERE enrichment_status = 'done'")
    return len(rows) == n


async def test_two_daemons_on_one_database_never_send_twice(
    database_url: str, twilio: FakeTwilio
) -> None:
    """Leads arrive at both daemons; both claim from the same table (SKIP LOCKED); each
    touch point is sent by exactly one of them."""
    n = 40
    twilio.delay = 0.02
    cfg = outreach_config(
        database_url,
        twilio,
        sequences=ACK,
        touchpoints={"interval": "100ms", "concurrency": 4, "batch_size": 5},
    )
    async with (
        running_daemon(cfg) as one,
        running_daemon(cfg) as two,
        aiohttp.ClientSession() as http,
    ):
        targets = [base_url(one), base_url(two)]
        await asyncio.gather(
            *(
                post_order(http, targets[i % 2], order_payload(phone=p))
                for i, p in enumerate(phones(n))
            )
        )
        await wait_for(lambda: all_sent(database_url, n), timeout=30)
        senders = await sql(database_url, "SELECT DISTINCT claimed_by FROM touch_points")
    counts = Counter(m["to"] for m in twilio.messages)
    assert sorted(counts) == sorted(phones(n))
    assert set(counts.values()) == {1}
    assert {r["claimed_by"] for r in senders} == {one.instance_id, two.instance_id}
    attempts = await sql(database_url, "SELECT touch_point_id, outcome FROM message_attempts")
    assert len(attempts) == n and {a["outcome"] for a in attempts} == {"sent"}


async def test_kill_9_mid_batch_then_restart_reconciles_without_duplicates_or_loss(
    database_url: str, twilio: FakeTwilio
) -> None:
    """SIGKILL while four Twilio requests are in flight (the fake accepted them and is slow
    to answer) and more rows are claimed but not yet sent. After a restart, the expired
    leases are reconciled: rows Twilio has are marked sent from its message list, rows it
    does not have are sent; every phone gets exactly one SMS."""
    n = 10
    twilio.delay = 30.0  # accepted at once, answered never (before the kill)
    port = free_port()
    tp = {"interval": "200ms", "concurrency": 4, "batch_size": 10, "lease": "2s"}
    data = base_with_providers(database_url, twilio, port, sequences=ACK, touchpoints=tp)
    proc = DaemonProcess(data, Path(tempfile.mkdtemp(prefix="leadd-kill-"))).start()
    try:
        await proc.wait_ready()
        async with aiohttp.ClientSession() as http:
            for p in phones(n):
                await post_order(http, proc.url, order_payload(phone=p))
        await wait_for(lambda: len(twilio.messages) >= 4, timeout=10)
        # Kill mid-send, not mid-enrichment: a lead whose enrichment lease was lost waits
        # for that lease (enrichment.LEASE_SECONDS) before its touch points may go.
        await wait_for(lambda: enriched(database_url, n), timeout=10)
        proc.kill()  # SIGKILL: no shutdown phases, nothing released
    finally:
        proc.kill()
    assert proc.proc is not None and proc.proc.returncode == -9
    in_doubt = await sql(database_url, "SELECT id FROM touch_points WHERE state = 'sending'")
    assert len(in_doubt) >= 4
    accepted_before_kill = {m["to"] for m in twilio.messages}

    twilio.delay = 0.0
    cfg = make_config(database_url, **provider_sections(twilio), sequences=ACK, touchpoints=tp)
    async with running_daemon(cfg):
        await wait_for(lambda: all_sent(database_url, n), timeout=20)
    counts = Counter(m["to"] for m in twilio.messages)
    assert sorted(counts) == sorted(phones(n)) and set(counts.values()) == {1}
    reconciled = await sql(
        database_url,
        "SELECT t.recipient, a.provider_id, t.provider_id AS tp_sid FROM message_attempts a"
        " JOIN touch_points t ON t.id = a.touch_point_id WHERE a.outcome = 'reconciled'",
    )
    assert {r["recipient"] for r in reconciled} == accepted_before_kill
    assert all(r["provider_id"] == r["tp_sid"] for r in reconciled)
    assert twilio.list_requests, "reconciliation must ask Twilio before resending"
    sent_by_restart = await sql(
        database_url, "SELECT count(*) AS n FROM message_attempts WHERE outcome = 'sent'"
    )
    assert sent_by_restart[0]["n"] == n - len(accepted_before_kill)
