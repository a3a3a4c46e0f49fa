"""`leadd send-test-lead`: post a realistic, correctly signed order webhook to a running leadd.

The order embeds a demo customer (+1555 number, demo e-mail) so it passes demo_mode and needs
no Shopmonkey API key to enrich: a new user sees a lead go through end to end in dry-run.
Each run invents a new demo person: the same phone or e-mail within leads.dedupe_window would
be attached to the first lead as the same person, and nothing would be sent for it.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from leadd.config import Config
from leadd.providers.shopmonkey_webhook import sign_webhook


@dataclass(frozen=True)
class DemoPerson:
    """A fictional customer: +1 555 numbers are never assigned, example.com never delivers."""

    phone: str
    email: str

    @classmethod
    def new(cls) -> DemoPerson:
        digits = f"{secrets.randbelow(10**7):07d}"
        return cls(phone=f"+1555{digits}", email=f"demo.driver+{digits}@example.com")


def demo_order(cfg: Config, person: DemoPerson | None = None) -> dict[str, Any]:
    person = person or DemoPerson.new()
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    loc = cfg.locations[0]
    services = loc.services[:1]
    return {
        "apiVersion": "3",
        "operation": "INSERT",
        "table": "order",
        "data": {
            "id": str(uuid.uuid4()),
            "number": int(time.time()) % 100000,
            "createdDate": now,
            "updatedDate": now,
            "locationId": loc.shopmonkey_location_id,
            "customerId": str(uuid.uuid4()),
            "vehicleId": str(uuid.uuid4()),
            "authorized": False,
            "invoiced": False,
            "paid": False,
            "deleted": False,
            "complaint": "Brakes squeal when stopping",
            "generatedVehicleName": "2016 Honda Civic",
            "generatedCustomerName": "Demo Driver",
            "appointmentDates": [],
            "meta": {"version": 1},
            "customer": {
                "firstName": "Demo",
                "lastName": "Driver",
                "phoneNumbers": [{"number": person.phone, "primary": True, "type": "Mobile"}],
                "emails": [{"email": person.email, "primary": True}],
            },
            "vehicle": {"year": 2016, "make": "Honda", "model": "Civic"},
            "services": [
                {"name": s.name, "totalCents": round((s.price or 0) * 100)} for s in services
            ],
        },
    }


async def send_test_lead(cfg: Config, url: str | None = None) -> int:
    if not cfg.shopmonkey.webhook_secrets:
        print("leadd: shopmonkey.webhook_secrets is empty; add one so the test lead can be signed")
        return 2
    base = (url or f"http://{cfg.http.host}:{cfg.http.port}").rstrip("/")
    person = DemoPerson.new()
    body = json.dumps(demo_order(cfg, person)).encode()
    headers = sign_webhook(
        body,
        cfg.shopmonkey.webhook_secrets[0],
        msg_id=f"msg_{uuid.uuid4().hex}",
        timestamp=int(time.time()),
    )
    headers["Content-Type"] = "application/json"
    try:
        async with (
            aiohttp.ClientSession() as s,
            s.post(f"{base}/webhooks/shopmonkey/order", data=body, headers=headers) as r,
        ):
            answer = await r.json(content_type=None)
    except aiohttp.ClientError as exc:
        print(f"leadd: could not reach {base} ({exc}); is `leadd run` running?")
        return 1
    if r.status != 200 or "leadId" not in answer:
        print(f"leadd: webhook answered {r.status}: {answer}")
        return 1
    print(
        f"lead created: {answer['leadId']} for a new demo customer, {person.phone} {person.email}"
    )
    print("next: the touch-point loop enriches it and sends the instant acknowledgement (SMS) and")
    print("the estimate e-mail at once, in dry-run unless Twilio/SendGrid credentials are set;")
    print("then follow-ups go out on the sequence's schedule, inside quiet hours.")
    return 0
