"""demo_mode: only obvious test people become leads that are contacted. Pure.

A webhook or polled order whose embedded customer is a real person is ignored at intake
(`filter_reason`); an order without embedded contact data is decided once enrichment has
fetched its customer (`is_test_contact`: the lead is then `lost`, never texted).
"""

from __future__ import annotations

from typing import Any

from leadd.intake.coerce import primary_email, primary_phone

FILTERED = "demo_mode: not a test contact"


def is_test_contact(phone: str | None, email: str | None) -> bool:
    """+1555 numbers and test/demo e-mails."""
    if phone and phone.startswith("+1555"):
        return True
    return email is not None and any(word in email.lower() for word in ("test", "demo"))


def filter_reason(order: dict[str, Any]) -> str | None:
    """A reason to ignore the order when its embedded customer is not a test contact; None
    when it is, or when the order embeds no contact data (checked after enrichment)."""
    customer = order.get("customer")
    if not isinstance(customer, dict):
        return None
    phone, email = primary_phone(customer), primary_email(customer)
    if phone is None and email is None:
        return None
    if is_test_contact(phone, email):
        return None
    return FILTERED
