"""The metrics the business tracks, moved by real traffic through the real daemon: a lead from
webhook to accepted SMS and e-mail, delivery callbacks (counted once however often they
arrive), provider auth failures, poll cycles, overdue touch points, store operation timing.
Then the live /metrics passes `promtool check metrics` and carries no phone, e-mail or id.

The registry is per process and other tests move it too, so every check is a difference
between a reading before and after.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import time
import uuid
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families
from twilio.request_validator import RequestValidator

from leadd import metrics
from leadd.loops import poll
from tests.conftest import make_config
from tests.e2e.outreach_support import (
    PHONE,
    cycle,
    order_payload,
    outreach_config,
    post_order,
    sql,
)
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.shopmonkey import FakeShopmonkey
from tests.fakes.twilio import FakeTwilio
from tests.helpers import base_url, running_daemon, system_tool, wait_for

PUBLIC = "https://leads.example.com"
EMAIL = "jamie.rivera@example.com"
SMS_AND_EMAIL = {
    "default": [
        {"name": "ack", "channel": "sms", "delay": "0s", "after": "created", "template": "Hi!"},
        {
            "name": "mail",
            "channel": "email",
            "delay": "0s",
            "after": "created",
            "subject": "Your estimate",
            "template": "Hello",
        },
        {"name": "later", "channel": "sms", "delay": "1d", "after": "created", "template": "Hey?"},
    ]
}


def value(name: str, **labels: str) -> float:
    """A sample of leadd's registry (0 when the series does not exist yet)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """Readings of several samples now, compared with later readings."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self.samples = samples
        self.before = [value(n, **labels) for n, labels in samples]

    def __call__(self) -> list[float]:
        return [
            value(n, **labels) - b for (n, labels), b in zip(self.samples, self.before, strict=True)
        ]


def msg(channel: str, outcome: str) -> tuple[str, dict[str, str]]:
    return "leadd_messages_total", {"channel": channel, "outcome": outcome}


@pytest.fixture(scope="module")
def sg_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, base64.b64encode(der).decode()


async def twilio_status(
    http: aiohttp.ClientSession, base: str, token: str, sid: str, status: str
) -> int:
    path = "/webhooks/twilio/status"
    params = {"MessageSid": sid, "MessageStatus": status, "To": PHONE, "From": "+15125550199"}
    signature = RequestValidator(token).compute_signature(PUBLIC + path, params)
    async with http.post(base + path, data=params, headers={"X-Twilio-Signature": signature}) as r:
        return r.status


async def sendgrid_events(
    http: aiohttp.ClientSession,
    base: str,
    key: ec.EllipticCurvePrivateKey,
    events: list[dict[str, Any]],
) -> int:
    payload = json.dumps(events).encode()
    timestamp = str(int(time.time()))
    signature = key.sign(timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }
    async with http.post(f"{base}/webhooks/sendgrid/events", data=payload, headers=headers) as r:
        assert r.status == 200, await r.text()
        return int((await r.json())["new"])


def promtool_or_skip() -> str:
    return system_tool("promtool", "prometheus")


# Label values that would identify a person or a lead: e-mail, phone digits, UUIDs, SIDs.
PERSONAL = re.compile(
    r"@|\d{7,}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|^(SM|MM)[0-9a-f]{32}$",
    re.IGNORECASE,
)


async def test_a_lead_moves_the_business_metrics_and_callbacks_count_once(
    database_url: str,
    twilio: FakeTwilio,
    http: aiohttp.ClientSession,
    sg_key: tuple[ec.EllipticCurvePrivateKey, str],
) -> None:
    key, public_b64 = sg_key
    delta = Delta(
        ("leadd_leads_created_total", {"source": "webhook", "location": "downtown"}),
        ("leadd_speed_to_lead_seconds_count", {}),
        msg("sms", "accepted"),
        msg("email", "accepted"),
        msg("sms", "delivered"),
        msg("sms", "undelivered"),
        msg("email", "delivered"),
        msg("email", "bounced"),
        ("leadd_store_operation_duration_seconds_count", {"operation": "claim_touchpoints"}),
        ("leadd_provider_request_duration_seconds_count", {"provider": "twilio"}),
    )
    async with FakeSendGrid() as sendgrid:
        cfg = outreach_config(
            database_url,
            twilio,
            sendgrid,
            sequences=SMS_AND_EMAIL,
            touchpoints={"interval": "1h"},
            sendgrid_key=public_b64,
        )
        async with running_daemon(cfg) as daemon:
            base = base_url(daemon)
            await post_order(http, base, order_payload(email=EMAIL))
            await wait_for(lambda: twilio.messages and sendgrid.mails)
            # Counted after the send is recorded, which follows the provider's answer.
            await wait_for(lambda: delta()[2] == 1 and delta()[3] == 1)
            sid = twilio.messages[0]["sid"]
            token = cfg.twilio.auth_token
            # Twilio retries and reorders callbacks: delivered twice, then a late "sent" and
            # a contradictory "undelivered" (same rank: ignored). One delivery counted.
            for status in ("delivered", "delivered", "sent", "undelivered"):
                assert await twilio_status(http, base, token, sid, status) == 204
            events = [
                {"email": EMAIL, "event": "delivered", "sg_event_id": "ev-d", "timestamp": 1},
                {"email": EMAIL, "event": "bounce", "sg_event_id": "ev-b", "timestamp": 2},
                {"email": EMAIL, "event": "open", "sg_event_id": "ev-o", "timestamp": 3},
            ]
            assert await sendgrid_events(http, base, key, events) == 3
            assert await sendgrid_events(http, base, key, events) == 0  # redelivered
            async with http.get(f"{base}/metrics") as r:
                text = await r.text()

    created, speed, sms, email, sms_del, sms_undel, mail_del, bounced, claims, latency = delta()
    assert (created, speed, sms, email) == (1, 1, 1, 1)
    assert (sms_del, sms_undel, mail_del, bounced) == (1, 0, 1, 1)
    assert claims >= 1 and latency == 1

    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "leadd_leads_created",
        "leadd_speed_to_lead_seconds",
        "leadd_messages",
        "leadd_touchpoints_due",
        "leadd_touchpoints_overdue",
        "leadd_poll_duration_seconds",
        "leadd_poll_last_success_timestamp_seconds",
        "leadd_store_operation_duration_seconds",
        "leadd_provider_auth_failed",
        "leadd_loop_interval_seconds",
    ):
        assert name in families, name
    labels = {
        (name, value)
        for family in families.values()
        for sample in family.samples
        for name, value in sample.labels.items()
    }
    assert [pair for pair in labels if PERSONAL.search(pair[1])] == []

    promtool = promtool_or_skip()
    result = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


async def test_provider_auth_gauge_follows_twilio_answers(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """A 401/20003 sets leadd_provider_auth_failed{provider="twilio"} and counts the message
    as rejected; the next accepted send clears the gauge."""
    cfg = outreach_config(database_url, twilio, touchpoints={"interval": "1h"})
    rejected = Delta(msg("sms", "rejected"), msg("sms", "accepted"))
    auth = {"provider": "twilio"}
    async with running_daemon(cfg) as daemon:
        assert value("leadd_provider_auth_failed", **auth) == 0
        twilio.fail_next(status=401, code=20003, message="Authenticate")
        await post_order(http, base_url(daemon), order_payload())
        await wait_for(lambda: rejected()[0] == 1)
        assert value("leadd_provider_auth_failed", **auth) == 1

        await post_order(http, base_url(daemon), order_payload(phone="+13125550177"))
        await wait_for(lambda: rejected()[1] == 1)
        assert value("leadd_provider_auth_failed", **auth) == 0
        assert len(twilio.messages) == 1


async def test_a_lead_without_a_phone_is_unsendable_not_a_provider_rejection(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """The SMS failure alert divides provider refusals by sends: a lead with no phone must not
    count as Twilio rejecting a message."""
    step = {"channel": "sms", "delay": "0s", "template": "Hi!", "skip_if_unavailable": False}
    sequences = {"default": [step]}
    cfg = outreach_config(database_url, twilio, sequences=sequences, touchpoints={"interval": "1h"})
    counts = Delta(msg("sms", "unsendable"), msg("sms", "rejected"), msg("sms", "accepted"))
    async with running_daemon(cfg) as daemon:
        await post_order(http, base_url(daemon), order_payload(phone=None, email=EMAIL))
        await wait_for(lambda: counts()[0] == 1)
    assert counts() == [1, 0, 0] and twilio.messages == []


async def test_poll_cycle_metrics_and_shopmonkey_auth(database_url: str) -> None:
    """A successful poll cycle sets the last-success time and observes its duration; the
    poll interval is exported for the staleness alert; a refused key sets the auth gauge."""
    started = time.time()
    cycles = Delta(("leadd_poll_duration_seconds_count", {}))
    async with FakeShopmonkey(api_key="sm-key") as fake:
        shopmonkey = {
            "webhook_secrets": ["s"],
            "api_key": "sm-key",
            "base_url": fake.url,
            "poll_interval": "1h",
            "requests_per_second": 1000,
        }
        async with running_daemon(make_config(database_url, shopmonkey=shopmonkey)) as daemon:
            await wait_for(lambda: cycles()[0] == 1)
            assert value("leadd_poll_last_success_timestamp_seconds") >= started
            assert value("leadd_loop_interval_seconds", loop="poll") == 3600
            assert value("leadd_provider_auth_failed", provider="shopmonkey") == 0

            assert daemon.runtime is not None
            fake.api_key = "rotated"  # our key is now refused
            await poll.run_once(daemon.runtime)
            assert value("leadd_provider_auth_failed", provider="shopmonkey") == 1
            fake.api_key = "sm-key"
            await poll.run_once(daemon.runtime)
            assert value("leadd_provider_auth_failed", provider="shopmonkey") == 0


async def test_without_an_api_key_there_is_no_poll_interval_to_alert_on(
    database_url: str,
) -> None:
    async with running_daemon(make_config(database_url)):
        assert (
            metrics.REGISTRY.get_sample_value("leadd_loop_interval_seconds", {"loop": "poll"})
            is None
        )
        assert value("leadd_loop_interval_seconds", loop="touchpoints") > 0


async def test_touchpoints_due_and_overdue_gauges(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """Rows held back (their lead waits for enrichment) count as due; those due more than
    OVERDUE_AFTER ago also as overdue. Rows due later count as neither."""
    cfg = outreach_config(
        database_url, twilio, sequences=SMS_AND_EMAIL, touchpoints={"interval": "1h"}
    )
    async with running_daemon(cfg) as daemon:
        lead_id = await post_order(http, base_url(daemon), order_payload(email=EMAIL))
        await wait_for(lambda: len(twilio.messages) == 1)
        # The e-mail step (sent, no SendGrid key: dry-run) and the day-1 SMS remain; make the
        # lead wait for enrichment and move the due times.
        await sql(
            database_url,
            "UPDATE leads SET enrichment_status = 'pending', enrich_after = now() + interval '1 h'"
            " WHERE id = $1",
            uuid.UUID(lead_id),
        )
        await sql(
            database_url,
            "UPDATE touch_points SET state = 'scheduled', due_at = now() - make_interval(secs => $1)"
            " WHERE step_index = 1",
            metrics.OVERDUE_AFTER + 60,
        )
        await sql(
            database_url,
            "UPDATE touch_points SET due_at = now() - interval '1 minute' WHERE step_index = 2",
        )
        await cycle(daemon, full=True)
        assert value("leadd_touchpoints_due") == 2
        assert value("leadd_touchpoints_overdue") == 1
        await sql(database_url, "UPDATE touch_points SET due_at = now() + interval '1 h'")
        await cycle(daemon, full=True)
        assert (value("leadd_touchpoints_due"), value("leadd_touchpoints_overdue")) == (0, 0)
