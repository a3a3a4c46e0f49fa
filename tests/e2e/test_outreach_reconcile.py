"""Reconciling sends left in doubt (issue 7, defect 11): a lookup that keeps failing ends in a
visible state instead of `sending` forever, and a reconciler that lost its lease changes
nothing, so two overlapping reconcilers never record or resend one message twice."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from prometheus_client import generate_latest

from leadd import metrics
from leadd.daemon import Daemon
from leadd.outreach.reconcile import reconcile
from leadd.store.outreach_models import TouchPoint
from tests.e2e.outreach_support import (
    PHONE,
    SMS_FROM,
    cycle,
    order_payload,
    outreach_config,
    post_order,
    runtime,
    sql,
    touch_points,
)
from tests.fakes.twilio import FakeTwilio
from tests.helpers import base_url, running_daemon, wait_for

ACK_BODY = "Hi Jamie, thanks from Acme Auto Care Downtown!"
# The daemon itself neither reconciles (interval, lookup delay) while the test plays two
# reconcilers by hand.
MANUAL_RECONCILERS = {"interval": "1h", "retry_base": "50ms", "reconcile_delay": "1h"}


def sample(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return value or 0.0


async def readyz(http: aiohttp.ClientSession, daemon: Any) -> tuple[int, dict[str, Any]]:
    async with http.get(base_url(daemon) + "/readyz") as r:
        return r.status, await r.json()


async def test_a_lookup_that_keeps_failing_gives_up_into_unknown_and_says_so(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """Twilio answered the send with a 503 (it may have taken it) and its message list keeps
    failing: after a bounded number of lookups the touch point is `unknown`, never resent;
    the lead says why, the metrics count it, and /readyz names the failing lookups while
    they fail (without any customer data) and recovers once nothing is left in doubt."""
    twilio.fail_next(1, status=503, code=None)
    failing = json.dumps({"code": 20500, "message": "Internal Server Error", "status": 500})
    twilio.respond_next(1000, status=500, body=failing, method="GET")
    lookups_before = sample("leadd_reconcile_lookups_total", result="error")
    unknown_before = sample("leadd_messages_total", channel="sms", outcome="unknown")
    cfg = outreach_config(
        database_url,
        twilio,
        touchpoints={
            "interval": "100ms",
            "lease": "1s",
            "retry_base": "50ms",
            "retry_cap": "200ms",
        },
    )
    async with running_daemon(cfg) as daemon:
        lead_id = await post_order(http, base_url(daemon), order_payload())

        async def lookups_failing() -> dict[str, Any] | None:
            status, body = await readyz(http, daemon)
            return body if status == 503 and "twilio" in body["problems"] else None

        body = await wait_for(lookups_failing, timeout=20)
        assert "look up" in body["problems"]["twilio"]
        assert PHONE not in json.dumps(body) and PHONE[2:] not in json.dumps(body)

        async def given_up() -> bool:
            return (await touch_points(database_url, lead_id))[0]["state"] == "unknown"

        await wait_for(given_up, timeout=30)
        await wait_for(lambda: _ready(http, daemon), timeout=10)
        scraped = generate_latest(metrics.REGISTRY).decode()
    [row] = await touch_points(database_url, lead_id)
    lookups = len(twilio.list_requests)
    assert row["reconcile_attempts"] == lookups == 8  # the DateSent scan failed each time
    assert "could not confirm with Twilio after 8 lookups" in row["last_error"]
    [lead] = await sql(database_url, "SELECT last_error FROM leads")
    assert lead["last_error"].startswith("ack: could not confirm with Twilio")
    assert twilio.messages == []  # never resent
    attempts = await sql(database_url, "SELECT outcome, http_status FROM message_attempts")
    assert [(a["outcome"], a["http_status"]) for a in attempts] == [("retry", 503)]
    assert sample("leadd_reconcile_lookups_total", result="error") - lookups_before == 8
    assert sample("leadd_messages_total", channel="sms", outcome="unknown") - unknown_before == 1
    assert "leadd_touchpoints_unconfirmed 1.0" in scraped


async def _ready(http: aiohttp.ClientSession, daemon: Any) -> bool:
    return (await readyz(http, daemon))[0] == 200


async def _in_doubt(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession, daemon: Daemon
) -> tuple[TouchPoint, TouchPoint]:
    """An acknowledgement Twilio answered with a 503, then two reconcilers: the first claims
    it, stalls past its lease, and the second claims it too. Returns both claimed rows."""
    await post_order(http, base_url(daemon), order_payload())

    async def ambiguous() -> bool:
        rows = await sql(database_url, "SELECT outcome FROM message_attempts")
        return [r["outcome"] for r in rows] == ["retry"]

    await wait_for(ambiguous)
    expire = "UPDATE touch_points SET lease_until = now() - interval '1 second'"
    await sql(database_url, expire)  # the sender's short lease runs out
    store = runtime(daemon).store
    [first] = await store.claim_stale_sending(owner="reconciler-1", lease=30.0, limit=10)
    await sql(database_url, expire)  # reconciler-1 stalls past its lease
    [second] = await store.claim_stale_sending(owner="reconciler-2", lease=30.0, limit=10)
    assert (first.claimed_by, second.claimed_by) == ("reconciler-1", "reconciler-2")
    return first, second


async def test_overlapping_reconcilers_record_a_found_message_once(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """Twilio has the message. The reconciler whose lease expired finds it too, but records
    nothing: one `reconciled` attempt, one transcript line, one new -> contacted."""
    twilio.fail_next(1, status=503, code=None)
    cfg = outreach_config(database_url, twilio, touchpoints=MANUAL_RECONCILERS)
    async with running_daemon(cfg) as daemon:
        stale, current = await _in_doubt(database_url, twilio, http, daemon)
        message = twilio.add_message(to=PHONE, from_=SMS_FROM, body=ACK_BODY)
        one = runtime(daemon, instance_id="reconciler-1")
        two = runtime(daemon, instance_id="reconciler-2")
        assert await reconcile(one, stale) == "lost"
        assert await reconcile(two, current) == "reconciled"
        assert await reconcile(one, stale) == "lost"  # and again: still nothing
    [row] = await touch_points(database_url)
    assert (row["state"], row["provider_id"]) == ("sent", message["sid"])
    attempts = await sql(database_url, "SELECT outcome FROM message_attempts ORDER BY id")
    assert [a["outcome"] for a in attempts] == ["retry", "reconciled"]
    outbound = await sql(database_url, "SELECT * FROM chat_messages WHERE direction = 'outbound'")
    assert len(outbound) == 1
    events = await sql(database_url, "SELECT to_state FROM lead_events ORDER BY id")
    assert [e["to_state"] for e in events] == ["new", "contacted"]


async def test_a_reconciler_that_lost_its_lease_cannot_resend_a_message(
    database_url: str,
    twilio: FakeTwilio,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twilio does not have the message. The stale reconciler looks it up (nothing) and
    stalls; the current one reschedules it and it is sent; then the stale one wakes up and
    reschedules too. Without the owner check that puts the sent row back to `scheduled`
    and the customer gets the message twice."""
    twilio.fail_next(1, status=503, code=None)
    cfg = outreach_config(database_url, twilio, touchpoints=MANUAL_RECONCILERS)
    async with running_daemon(cfg) as daemon:
        stale, current = await _in_doubt(database_url, twilio, http, daemon)
        looked, resume = asyncio.Event(), asyncio.Event()
        real_find_sent = daemon.twilio.find_sent

        async def first_lookup_stalls(**kw: Any) -> str | None:
            sid: str | None = await real_find_sent(**kw)
            if not looked.is_set():
                looked.set()
                await resume.wait()
            return sid

        monkeypatch.setattr(daemon.twilio, "find_sent", first_lookup_stalls)
        one = runtime(daemon, instance_id="reconciler-1")
        two = runtime(daemon, instance_id="reconciler-2")
        late = asyncio.create_task(reconcile(one, stale))
        await looked.wait()
        assert await reconcile(two, current) == "rescheduled"
        assert (await cycle(daemon, full=False))["sent"] == 1
        resume.set()
        outcome = await late
        await cycle(daemon, full=False)
    assert [m["to"] for m in twilio.messages] == [PHONE]
    assert outcome == "lost"
    [row] = await touch_points(database_url)
    assert row["state"] == "sent" and row["provider_id"] == twilio.messages[0]["sid"]
