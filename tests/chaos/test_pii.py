"""Case 7: no full phone number, e-mail address, customer name or secret in any log line or
HTTP response body.

Every chaos test already ends with the scanner (tests/chaos/conftest.py) over its daemons'
logs, its response bodies and what its fakes served. Here: the scanner proves it can fail
(planted leaks in every form it claims to catch), and one daemon is walked through every
path that handles personal data with values chosen to break masks: a non-ASCII e-mail, an
apostrophe, a formatted phone, a number Twilio refuses (its error message quotes the
number), replies with an address in the text, STOP/HELP, a carrier opt-out, SendGrid
bounces, unsubscribe links, and an order whose customer name makes enrichment fail.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.chaos.harness import (
    ACK_AND_MAIL,
    Person,
    SendGridSigner,
    daemon_config,
    order,
    sql,
)
from tests.chaos.pii import PiiScanner
from tests.chaos.scenarios import chaos_world
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.shopmonkey import FakeShopmonkey
from tests.fakes.twilio import FakeTwilio
from tests.helpers import wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]


def test_the_scanner_finds_every_form_of_a_leak_and_ignores_masks() -> None:
    scanner = PiiScanner()
    scanner.add_customer(
        {
            "firstName": "Zorvexquil",
            "lastName": "O'Dratav",
            "phoneNumbers": [{"number": "+13125550142"}],
            "emails": [{"email": "josé@chaos.example"}, {"email": "o'brien@chaos.example"}],
        }
    )
    scanner.add_secret("sk-live-5be1d0c0ffee")
    leaks = {
        "e164": '{"to": "+13125550142"}',
        "formatted": "call (312) 555-0142 now",
        "dotted": "312.555.0142",
        "json-escaped e-mail": json.dumps({"email": "josé@chaos.example"}),
        "upper-case e-mail": "JOSÉ@CHAOS.EXAMPLE",
        "url-encoded e-mail": "u=jos%C3%A9%40chaos.example",
        "half-masked e-mail": '"email": "o\'b***@chaos.example"',
        "name": "Hi Zorvexquil, thanks",
        "name in a repr": "invalid input: ['Dratav'] (expected str)",
        "secret": "Authorization: Bearer sk-live-5be1d0c0ffee",
    }
    for what, text in leaks.items():
        assert scanner.scan(text, what), f"missed: {what}"
    clean = [
        '{"to": "+*********42", "email": "j***@chaos.example"}',
        '{"email": "o***@chaos.example"}',
        '{"time": "2026-11-25T20:30:00.123+00:00", "lead_id": "3125550142-ish"}'.replace(
            "3125550142", "3125550"
        ),
        "Zorvexquilx is another word; so is xDratav",
    ]
    for text in clean:
        assert scanner.scan(text) == [], text


async def test_personal_data_never_reaches_a_log_line_or_a_response_body(database_url: str) -> None:
    """Walk one daemon through every path that handles personal data, then scan all of it."""
    scanner = PiiScanner()
    signer = SendGridSigner()
    josé = Person("Zorvexquil", "O'Dratav", "+13125550142", "josé@chaos.example")
    obrien = Person("Tavmonsel", "Brurikpha", "+13125550143", "o'brien.tavmon@chaos.example")
    polled = Person("Quildramon", "Nyxselbru", "+13125550144", "Mixed.Case@Chaos.Example")
    refused = Person("Phavexdra", "Monrikzor", "+13125550145", "phavexdra@chaos.example")
    broken = Person("Draselnyx", "Ludquilvex", "+13125550146", "draselnyx@chaos.example")
    crowd = [josé, obrien, polled, refused, broken]
    for p in crowd:
        scanner.add_customer(p.customer())
    async with (
        chaos_world(scanner) as chaos,
        FakeTwilio() as twilio,
        FakeSendGrid() as sendgrid,
        FakeShopmonkey(api_key="sm-pii-key-77aa11") as shop,
    ):
        chaos.watch(twilio, sendgrid, shop)
        twilio.invalid.add(refused.phone)  # 21211: "Invalid 'To' Phone Number: +1312..."
        url = database_url
        cfg = daemon_config(
            url,
            twilio=twilio,
            sendgrid=sendgrid,
            shopmonkey=shop,
            sequences=ACK_AND_MAIL,
            chat={"base_url": "https://chat.acme.example/c"},
        )
        cfg["sendgrid"]["event_webhook_public_key"] = signer.public_key
        try:
            daemon = chaos.start(cfg, "pii")
            await daemon.wait_ready()
            http, base = chaos.http, daemon.url

            # Intake: embedded customer, fetched customer (formatted phone), polled order.
            for person in (josé, refused):
                assert (await http.post_order(base, order(person))).status == 200
            fetched = order(obrien, embed=False)
            shop.add_customer(
                {
                    **obrien.customer(fetched["customerId"]),
                    "phoneNumbers": [{"number": "(312) 555-0143", "primary": True}],
                }
            )
            assert (await http.post_order(base, fetched)).status == 200
            shop.add_order(order(polled))

            async def settled() -> bool:
                rows = await sql(url, "SELECT state FROM touch_points")
                return len(rows) == 8 and all(r[0] in ("sent", "failed") for r in rows)

            await wait_for(settled, timeout=30)

            # Inbound: a reply quoting an address, STOP, HELP, a carrier opt-out callback.
            token = twilio.auth_token
            sms = "/webhooks/twilio/sms"
            for phone, body in (
                (josé.phone, f"Yes please, mail {josé.email} - {josé.first}"),
                (obrien.phone, "STOP"),
                (polled.phone, "HELP"),
            ):
                form = {"From": phone, "To": "+15125550199", "Body": body}
                form["MessageSid"] = "SM" + uuid.uuid4().hex
                assert (await http.post_twilio(base, sms, form, token)).status == 200
            status = {
                "MessageSid": twilio.messages[0]["sid"],
                "MessageStatus": "undelivered",
                "ErrorCode": "21610",
                "To": twilio.messages[0]["to"],
            }
            reply = await http.post_twilio(base, "/webhooks/twilio/status", status, token)
            assert reply.status == 204
            events = [
                {"sg_event_id": uuid.uuid4().hex, "event": "bounce", "email": obrien.email},
                {"sg_event_id": uuid.uuid4().hex, "event": "open", "email": josé.email},
            ]
            assert (await http.post_sendgrid(base, events, signer)).status == 200
            [session] = await sql(
                url,
                "SELECT cs.unsubscribe_token FROM chat_sessions cs JOIN leads l ON l.id = cs.lead_id"
                " WHERE l.phone = $1",
                polled.phone,
            )
            for method in ("GET", "POST"):
                reply = await http.request(method, f"{base}/unsubscribe/{session[0]}")
                assert reply.status == 200

            # A customer record enrichment cannot use: the name arrives inside a list.
            bad = order(broken, customer={**broken.customer(), "firstName": [broken.first]})
            assert (await http.post_order(base, bad)).status == 200

            async def looked_at() -> bool:
                rows = await sql(
                    url,
                    "SELECT enrichment_attempts FROM leads WHERE shopmonkey_order_id = $1",
                    bad["id"],
                )
                return bool(rows and rows[0][0] > 0)

            await wait_for(looked_at, timeout=30)
            for path in ("/readyz", "/healthz", "/metrics"):
                await http.get(base + path)
        finally:
            chaos.finish()
    scanner.assert_clean()
