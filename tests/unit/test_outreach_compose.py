"""Composing messages (leadd.outreach.compose): pure, from a claimed touch point, the location
and a clock reading. The e-mail footer and one-click headers carry the unsubscribe link (its
own token, never the chat token); without a token there is no link to offer."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

from leadd import chatlinks, compliance
from leadd.config import Config, SequenceStep
from leadd.outreach import compose
from leadd.store.outreach_models import TouchPoint
from tests.conftest import make_config

NOW = dt.datetime(2030, 1, 7, 16, 0, tzinfo=dt.UTC)  # a Monday, 10:00 in Chicago
UNSUBSCRIBE = "f" * 64
LEAD = uuid.UUID(int=7)
SECRET = "s" * 40  # chat.secret: chat link tokens are derived from it


def touch_point(**changes: object) -> TouchPoint:
    tp = TouchPoint(
        id=42, lead_id=LEAD, kind="sequence", sequence="default", step_index=1,
        step_name="estimate", channel="email", due_at=NOW, attempts=1, claimed_by="me",
        claimed_at=NOW, gated_at=None, recipient=None, sender=None, body=None,
        reconcile_attempts=0, prev_claimed_at=None, lead_state="contacted",
        location_id="downtown", first_name="Jamie", last_name="Rivera", phone="+13125550123",
        email="jamie@example.com", vehicle={"year": 2016, "make": "Honda", "model": "Civic"},
        services=[{"name": "Oil change", "price": 49.99}], order_number="1042",
        attached_to=None, lead_created_at=NOW - dt.timedelta(hours=1),
        chat_token_hash=chatlinks.session_hash(config(), LEAD),
        unsubscribe_token=UNSUBSCRIBE,
    )  # fmt: skip
    return dataclasses.replace(tp, **changes)  # type: ignore[arg-type]


def config() -> Config:
    return make_config(None, chat={"base_url": "https://chat.acme.example/c", "secret": SECRET})


STEP = SequenceStep(
    name="estimate",
    channel="email",
    delay=3600.0,
    after="previous",
    template="Hi {{ customer.first_name }}, your {{ vehicle.description }}: {{ chat.link }}",
    subject="Your estimate at {{ location.name }}",
)


def test_an_email_carries_the_address_and_its_own_unsubscribe_link() -> None:
    cfg = config()
    location = cfg.locations[0]
    hours = compliance.BusinessHours(location.hours)
    tp = touch_point()
    message = compose.render(cfg, tp, STEP, location, hours, NOW)
    assert message.subject == "Your estimate at Acme Auto Care Downtown"
    token = chatlinks.chat_token(SECRET, cfg.tenant.id, LEAD)
    assert message.body == f"Hi Jamie, your 2016 Honda Civic: https://chat.acme.example/c/{token}"
    link = f"https://leads.example.com/unsubscribe/{UNSUBSCRIBE}"
    assert compose.email_text(cfg, message.body, location, tp).splitlines() == [
        message.body,
        "",
        "--",
        "Acme Auto Care Downtown",
        "100 Main St, Austin, TX 78701",
        f"Unsubscribe: {link}",
    ]
    assert compose.unsubscribe_headers(cfg, tp) == {
        "List-Unsubscribe": f"<{link}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert token not in link
    assert compose.custom_args(tp) == {"lead_id": str(tp.lead_id), "touch_point_id": "42"}
    assert compose.recipient_name(tp) == "Jamie Rivera"


def test_without_a_token_there_is_no_link_to_offer() -> None:
    cfg = config()
    tp = touch_point(unsubscribe_token=None, chat_token_hash=None, first_name=None, last_name=None)
    text = compose.email_text(cfg, "Hello", cfg.locations[0], tp)
    assert "Unsubscribe" not in text and "100 Main St" in text
    assert compose.unsubscribe_headers(cfg, tp) is None
    assert compose.recipient_name(tp) is None
    context = compose.build_context(
        cfg, tp, cfg.locations[0], compliance.BusinessHours(cfg.locations[0].hours), NOW
    )
    assert context["chat"]["link"] is None and context["unsubscribe"]["link"] is None
    # A session made under another chat.secret: its link cannot be derived, so none is sent.
    other = touch_point(chat_token_hash=chatlinks.token_hash("made-elsewhere"))
    hours = compliance.BusinessHours(cfg.locations[0].hours)
    assert compose.build_context(cfg, other, cfg.locations[0], hours, NOW)["chat"]["link"] is None


def test_senders_and_the_status_callback_come_from_config() -> None:
    cfg = config()
    location = cfg.locations[0]
    sms = dataclasses.replace(STEP, channel="sms")
    assert compose.sender(cfg, sms, location) == (location.sms_from or location.phone)
    assert compose.sender(cfg, STEP, location) == cfg.sendgrid.from_email
    assert compose.status_callback(cfg) == "https://leads.example.com/webhooks/twilio/status"
