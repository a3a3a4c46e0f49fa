"""Inbound provider traffic against the real daemon: customer SMS (STOP/START/HELP, replies),
Twilio status callbacks and SendGrid events, each signed the way the provider signs it: with
the official `twilio` package's RequestValidator and a P-256 key checked by the `sendgrid`
package's verifier. Badly signed requests get 403 and change nothing."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook

from leadd import chatlinks as links
from tests.e2e.outreach_support import (
    PHONE,
    PUBLIC,
    cycle,
    inbound,
    order_payload,
    outreach_config,
    post_order,
    sql,
    twilio_post,
)
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.twilio import FakeTwilio
from tests.helpers import base_url, running_daemon, wait_for

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

SEQUENCE = {
    "default": [
        {"name": "ack", "channel": "sms", "delay": "0s", "after": "created", "template": "Hi!"},
        {"name": "later", "channel": "sms", "delay": "1d", "after": "created", "template": "Hey?"},
        {
            "name": "mail",
            "channel": "email",
            "delay": "2d",
            "after": "created",
            "subject": "Hi",
            "template": "Hello",
        },
    ]
}


@pytest.fixture(scope="module")
def sg_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, base64.b64encode(der).decode()


async def states(url: str) -> list[str]:
    return [
        r["state"]
        for r in await sql(url, "SELECT state FROM touch_points ORDER BY lead_id, step_index")
    ]


async def test_stop_lowercase_padded_opts_out_and_no_more_sms_then_start_and_help(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """'  stop  ' is STOP: opt-out at once, pending SMS cancelled (e-mail untouched), later
    leads of that phone get no SMS; START opts back in; HELP answers with the help text."""
    cfg = outreach_config(database_url, twilio, sequences=SEQUENCE, touchpoints={"interval": "1h"})
    token = cfg.twilio.auth_token
    async with running_daemon(cfg) as daemon:
        await post_order(http, base_url(daemon), order_payload())
        await wait_for(lambda: twilio.messages)

        status, text = await twilio_post(
            http, daemon, "/webhooks/twilio/sms", inbound("  stop  ", "SM" + "1" * 32), token=token
        )
        assert (status, text) == (200, EMPTY_TWIML)
        [opt] = await sql(database_url, "SELECT * FROM contact_optouts")
        assert (opt["channel"], opt["address"], opt["reason"]) == ("sms", PHONE, "keyword")
        await wait_for(lambda: _eq(states(database_url), ["sent", "cancelled", "scheduled"]))

        # Even a due SMS of a new lead for that phone is not sent.
        await sql(database_url, "UPDATE touch_points SET due_at = now() WHERE step_index < 2")
        await cycle(daemon)
        assert len(twilio.messages) == 1

        status, text = await twilio_post(
            http, daemon, "/webhooks/twilio/sms", inbound("help", "SM" + "2" * 32), token=token
        )
        assert status == 200 and "<Message>" in text and "Reply STOP to opt out" in text
        assert [r["state"] for r in await sql(database_url, "SELECT state FROM leads")] == [
            "contacted"
        ]
        status, text = await twilio_post(
            http, daemon, "/webhooks/twilio/sms", inbound("Start", "SM" + "3" * 32), token=token
        )
        assert (status, text) == (200, EMPTY_TWIML)
        assert await sql(database_url, "SELECT * FROM contact_optouts") == []
        assert (
            len(await sql(database_url, "SELECT * FROM chat_messages WHERE direction = 'inbound'"))
            == 3
        )
        # STOP and HELP are not conversation; START ("YES") is an answer: engaged.
        assert [r["state"] for r in await sql(database_url, "SELECT state FROM leads")] == [
            "engaged"
        ]


async def _eq(value: Any, expected: Any) -> bool:
    return await value == expected


async def test_reply_engages_the_lead_and_stops_the_sequence(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """A free-text reply: stored in the chat, lead -> engaged, automated follow-ups stop.
    A redelivery of the same MessageSid is a no-op. The default port variant of the URL
    (https://host:443/...) is accepted too."""
    cfg = outreach_config(database_url, twilio, sequences=SEQUENCE, touchpoints={"interval": "1h"})
    token = cfg.twilio.auth_token
    async with running_daemon(cfg) as daemon:
        await post_order(http, base_url(daemon), order_payload())
        await wait_for(lambda: _eq(states(database_url), ["sent", "scheduled", "scheduled"]))
        params = inbound("Yes, Tuesday works", "SM" + "4" * 32)
        for signed_url in (None, "https://leads.example.com:443/webhooks/twilio/sms"):
            status, text = await twilio_post(
                http, daemon, "/webhooks/twilio/sms", params, token=token, signed_url=signed_url
            )
            assert (status, text) == (200, EMPTY_TWIML)
        assert await states(database_url) == ["sent", "cancelled", "cancelled"]
        [lead] = await sql(database_url, "SELECT state FROM leads")
        assert lead["state"] == "engaged"
        msgs = await sql(database_url, "SELECT * FROM chat_messages WHERE direction = 'inbound'")
        assert [(m["body"], m["address"]) for m in msgs] == [("Yes, Tuesday works", PHONE)]
        assert msgs[0]["session_id"] is not None


async def test_a_redelivered_help_is_not_answered_twice(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """Twilio retries a webhook it thinks failed: the same MessageSid again is a message we
    have, so it gets empty TwiML (no second help text to the customer) and stores nothing."""
    cfg = outreach_config(database_url, twilio, touchpoints={"interval": "1h"})
    token = cfg.twilio.auth_token
    async with running_daemon(cfg) as daemon:
        await post_order(http, base_url(daemon), order_payload())
        await wait_for(lambda: twilio.messages)
        params = inbound("HELP", "SM" + "6" * 32)
        status, first = await twilio_post(http, daemon, "/webhooks/twilio/sms", params, token=token)
        assert status == 200 and "Reply STOP to opt out" in first
        assert await twilio_post(http, daemon, "/webhooks/twilio/sms", params, token=token) == (
            200,
            EMPTY_TWIML,
        )
        inbound_rows = "SELECT * FROM chat_messages WHERE direction = 'inbound'"
        assert len(await sql(database_url, inbound_rows)) == 1


async def test_badly_signed_twilio_webhooks_are_403_and_change_nothing(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    cfg = outreach_config(database_url, twilio, sequences=SEQUENCE, touchpoints={"interval": "1h"})
    token = cfg.twilio.auth_token
    async with running_daemon(cfg) as daemon:
        await post_order(http, base_url(daemon), order_payload())
        await wait_for(lambda: _eq(states(database_url), ["sent", "scheduled", "scheduled"]))
        stop = inbound("STOP", "SM" + "5" * 32)
        cases = [
            ("/webhooks/twilio/sms", stop, "wrong-token", None),  # wrong key
            ("/webhooks/twilio/sms", stop, token, "https://evil.example.com/webhooks/twilio/sms"),
            (
                "/webhooks/twilio/status",
                {"MessageSid": "SMx", "MessageStatus": "delivered"},
                "nope",
                None,
            ),
        ]
        for path, params, key, signed_url in cases:
            status, _ = await twilio_post(
                http, daemon, path, params, token=key, signed_url=signed_url
            )
            assert status == 403, path
        async with http.post(base_url(daemon) + "/webhooks/twilio/sms", data=stop) as r:
            assert r.status == 403  # no signature at all
        assert await sql(database_url, "SELECT * FROM contact_optouts") == []
        assert (
            await sql(database_url, "SELECT * FROM chat_messages WHERE direction = 'inbound'") == []
        )
        assert await sql(database_url, "SELECT * FROM message_status") == []
        assert await states(database_url) == ["sent", "scheduled", "scheduled"]


async def test_status_callbacks_record_delivery_and_never_move_backwards(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    cfg = outreach_config(database_url, twilio, touchpoints={"interval": "1h"})
    token = cfg.twilio.auth_token
    async with running_daemon(cfg) as daemon:
        await post_order(http, base_url(daemon), order_payload())
        await wait_for(lambda: twilio.messages)
        sid = twilio.messages[0]["sid"]
        for status_name in ("delivered", "sent"):  # out of order: "sent" arrives late
            params = {
                "MessageSid": sid,
                "MessageStatus": status_name,
                "To": PHONE,
                "From": "+15125550199",
            }
            status, _ = await twilio_post(
                http, daemon, "/webhooks/twilio/status", params, token=token
            )
            assert status == 204
        [row] = await sql(database_url, "SELECT * FROM message_status")
        assert (row["provider_id"], row["status"]) == (sid, "delivered")

        failed = {"MessageSid": sid, "MessageStatus": "failed", "ErrorCode": "21610", "To": PHONE}
        status, _ = await twilio_post(http, daemon, "/webhooks/twilio/status", failed, token=token)
        assert status == 204
        [opt] = await sql(database_url, "SELECT reason FROM contact_optouts")
        assert opt["reason"] == "twilio_21610"


def sign_events(key: ec.EllipticCurvePrivateKey, payload: bytes, timestamp: str) -> str:
    signature = key.sign(timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


async def test_sendgrid_events_signed_bounce_stops_email_and_duplicates_are_ignored(
    database_url: str,
    twilio: FakeTwilio,
    http: aiohttp.ClientSession,
    sg_key: tuple[ec.EllipticCurvePrivateKey, str],
) -> None:
    key, public_b64 = sg_key
    async with FakeSendGrid() as sendgrid:
        cfg = outreach_config(
            database_url,
            twilio,
            sendgrid,
            sequences=SEQUENCE,
            touchpoints={"interval": "1h"},
            sendgrid_key=public_b64,
        )
        async with running_daemon(cfg) as daemon:
            lead_id = await post_order(
                http, base_url(daemon), order_payload(email="jamie.rivera@example.com")
            )
            await wait_for(lambda: _eq(states(database_url), ["sent", "scheduled", "scheduled"]))
            events = [
                {
                    "email": "Jamie.Rivera@example.com",
                    "event": "delivered",
                    "sg_event_id": "ev-1",
                    "timestamp": int(time.time()),
                    "lead_id": lead_id,
                    "touch_point_id": "1",
                },
                {
                    "email": "Jamie.Rivera@example.com",
                    "event": "bounce",
                    "sg_event_id": "ev-2",
                    "timestamp": int(time.time()),
                    "type": "bounce",
                },
            ]
            payload = (json.dumps(events) + "\r\n").encode()
            timestamp = str(int(time.time()))
            signature = sign_events(key, payload, timestamp)
            # The official verifier agrees that this is a valid SendGrid signature.
            verifier = EventWebhook()
            assert verifier.verify_signature(
                payload.decode(),
                signature,
                timestamp,
                verifier.convert_public_key_to_ecdsa(public_b64),
            )
            url = base_url(daemon) + "/webhooks/sendgrid/events"
            headers = {
                "X-Twilio-Email-Event-Webhook-Signature": signature,
                "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
                "Content-Type": "application/json",
            }
            tampered = payload.replace(b"bounce", b"open!!")
            async with http.post(url, data=tampered, headers=headers) as r:
                assert r.status == 403
            assert await sql(database_url, "SELECT * FROM email_events") == []

            for expected_new in (2, 0):  # a redelivery is deduplicated by sg_event_id
                async with http.post(url, data=payload, headers=headers) as r:
                    assert r.status == 200
                    assert (await r.json())["new"] == expected_new
            assert len(await sql(database_url, "SELECT * FROM email_events")) == 2
            [opt] = await sql(database_url, "SELECT * FROM contact_optouts")
            assert (opt["channel"], opt["address"], opt["reason"]) == (
                "email",
                "jamie.rivera@example.com",
                "bounce",
            )
            assert await states(database_url) == ["sent", "scheduled", "cancelled"]


async def test_unsubscribe_link_stops_email_and_the_chat_token_does_not(
    database_url: str, twilio: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    """The link in the e-mail (footer and List-Unsubscribe) unsubscribes; it carries a token of
    its own, so the chat token, which every SMS with a chat link shows, unsubscribes no one."""
    async with FakeSendGrid() as sendgrid:
        cfg = outreach_config(
            database_url, twilio, sendgrid, sequences=SEQUENCE, touchpoints={"interval": "1h"}
        )
        async with running_daemon(cfg) as daemon:
            await post_order(http, base_url(daemon), order_payload(email="jamie@example.com"))
            await wait_for(lambda: _eq(states(database_url), ["sent", "scheduled", "scheduled"]))
            await sql(database_url, "UPDATE touch_points SET due_at = now() WHERE step_index = 2")
            await cycle(daemon)
            [mail] = sendgrid.mails
            header = mail["body"]["headers"]["List-Unsubscribe"]
            link = header.removeprefix("<").removesuffix(">")
            assert f"Unsubscribe: {link}" in mail["body"]["content"][0]["value"]
            [session] = await sql(
                database_url, "SELECT lead_id, unsubscribe_token FROM chat_sessions"
            )
            assert link == f"{PUBLIC}/unsubscribe/{session['unsubscribe_token']}"
            # The chat token is derived from the chat secret (only its hash is stored).
            chat = links.chat_token(
                daemon.config.chat.secret, daemon.config.tenant.id, session["lead_id"]
            )
            assert chat not in link
            assert re.fullmatch(r"[0-9a-f]{64}", session["unsubscribe_token"])

            local = f"{base_url(daemon)}/unsubscribe/"
            for token in (chat, chat.lower()):
                for method in ("GET", "POST"):
                    async with http.request(method, local + token) as r:
                        assert r.status == 404, (method, token)
            assert await sql(database_url, "SELECT * FROM contact_optouts") == []

            own = local + session["unsubscribe_token"]
            async with http.get(own) as r:  # a link scanner's GET changes nothing
                assert r.status == 200
            assert await sql(database_url, "SELECT * FROM contact_optouts") == []
            async with http.post(own) as r:
                assert r.status == 200
            [opt] = await sql(database_url, "SELECT channel, address FROM contact_optouts")
            assert (opt["channel"], opt["address"]) == ("email", "jamie@example.com")
