"""The built-in configuration: the default follow-up sequence, and the demo config used when
`leadd run` finds no config file (embedded PostgreSQL, dry-run providers, demo_mode)."""

from __future__ import annotations

from typing import Any

from leadd.config.model import SequenceStep

DEFAULT_SEQUENCE: tuple[SequenceStep, ...] = (
    SequenceStep(
        name="instant_ack",
        channel="sms",
        delay=0.0,
        after="created",
        template=(
            'Hi {{ customer.first_name | default("there") }}, thanks for your request at '
            '{{ location.name }}! We\'re reviewing {{ services.names | default("your estimate") }} '
            'for your {{ vehicle.description | default("vehicle") }}.'
            "{% if chat.link %} See it, chat with us or book a time: {{ chat.link }}{% endif %} "
            "Questions? Call {{ location.phone }}. Reply STOP to opt out."
        ),
    ),
    SequenceStep(
        name="estimate_email",
        channel="email",
        delay=0.0,
        after="created",
        subject="Your estimate request at {{ location.name }}",
        template=(
            'Hi {{ customer.first_name | default("there") }},\n\n'
            "Thanks for reaching out to {{ location.name }}. Here is what we have so far:\n"
            '{{ services.list | default("Estimate in progress") }}\n\n'
            "Today's hours: {{ location.hours_today }}. Questions? Call us at {{ location.phone }}.\n"
            # Alone on its line, and only with a link (chat.base_url defaults to {public_url}/c).
            "{% if chat.link %}See your estimate, chat with us or book a time: {{ chat.link }}\n"
            "{% endif %}"
        ),
    ),
    SequenceStep(
        name="day1_followup",
        channel="sms",
        delay=86400.0,
        after="created",
        only_in_states=("new", "contacted"),
        template=(
            'Hi {{ customer.first_name | default("there") }}, it\'s {{ location.name }}. '
            'Want us to book your {{ vehicle.description | default("vehicle") }} in? '
            "Reply here or call {{ location.phone }}. Reply STOP to opt out."
        ),
    ),
)

DEMO_CONFIG: dict[str, Any] = {
    "tenant": {"id": "00000000-0000-4000-8000-00000000d3e0", "name": "Demo Auto Care"},
    "state_dir": "./var/leadd",
    "http": {"host": "127.0.0.1", "port": 3000, "public_url": "http://127.0.0.1:3000"},
    "demo_mode": True,
    "shopmonkey": {"webhook_secrets": ["whsec_ZGVtby1zZWNyZXQtZm9yLWxvY2FsLXRyaWFscy0xMjM0"]},
    "logging": {"level": "info", "format": "console"},
    "locations": [
        {
            "id": "main",
            "name": "Demo Auto Care",
            "timezone": "America/Chicago",
            "phone": "+15125550100",
            "address": "100 Main St, Austin, TX 78701",
            "shopmonkey_location_id": "loc-sm-1",
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
