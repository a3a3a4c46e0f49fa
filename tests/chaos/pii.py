"""The leak scanner: no full phone number, e-mail address, customer name or secret in any log
line or HTTP response body.

It does not guess what personal data looks like; it knows. Every value a test sends (signed
orders, inbound SMS, SendGrid events) and every value a fake provider served (Shopmonkey
customers, Twilio recipients, SendGrid recipients) is registered, and the scanner looks for
exactly those values in every text it is given, in the forms a leak takes:

- a phone: its national number's digits inside any run of digits and separators, so
  "+13125552001", "(312) 555-2001" and "312.555.2001" all count, while the masked
  "+*********01" does not;
- an e-mail: the whole address, case-insensitively, raw, JSON-unescaped or URL-decoded; and a
  mask that shows more than the first character ("o'b***@example.com": the mask stopped at
  the apostrophe) is a partial leak;
- a name: the whole word, case-sensitively (tests use distinctive names, so a hit is a leak);
- a secret: the value anywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import phonenumbers

# Digits with the separators people and formatters put between them.
_DIGIT_RUN = re.compile(r"\d[\d\s().\-/]*\d")
MIN_NAME_LENGTH = 4  # shorter names are too likely to be other words


@dataclass(frozen=True)
class Leak:
    where: str  # "log leadd.log:12", "GET /readyz", ...
    kind: str  # phone | email | name | secret
    value: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.where}: {self.kind} {self.value!r} in …{self.excerpt}…"


@dataclass
class PiiScanner:
    phones: dict[str, str] = field(default_factory=dict)  # national digits -> as registered
    emails: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    secrets: set[str] = field(default_factory=set)
    texts: list[tuple[str, str]] = field(default_factory=list)  # (where, text) to scan

    # -- what is personal ---------------------------------------------------------------

    def add_phone(self, phone: Any) -> None:
        if not isinstance(phone, str) or not phone.strip():
            return
        national = _national_digits(phone)
        if national is not None and len(national) >= 7:
            self.phones[national] = phone

    def add_email(self, email: Any) -> None:
        if isinstance(email, str) and "@" in email and len(email) >= 6:
            self.emails.add(email.strip().lower())

    def add_name(self, name: Any) -> None:
        if isinstance(name, str):
            for word in re.findall(r"\w+", name):
                if len(word) >= MIN_NAME_LENGTH and not word.isdigit():
                    self.names.add(word)

    def add_secret(self, secret: Any) -> None:
        if isinstance(secret, str) and len(secret) >= 8:
            self.secrets.add(secret)

    def add_customer(self, customer: Any) -> None:
        """A Shopmonkey customer record (fetched, or embedded in an order)."""
        if not isinstance(customer, Mapping):
            return
        self.add_name(customer.get("firstName"))
        self.add_name(customer.get("lastName"))
        self.add_phone(customer.get("phone"))
        self.add_email(customer.get("email"))
        for entry in _dicts(customer.get("phoneNumbers")):
            self.add_phone(entry.get("number"))
        for entry in _dicts(customer.get("emails")):
            self.add_email(entry.get("email"))

    def add_order(self, order: Any) -> None:
        """A Shopmonkey order (webhook `data` or a listed row): its embedded customer."""
        if isinstance(order, Mapping):
            self.add_customer(order.get("customer"))
            self.add_name(order.get("generatedCustomerName"))

    def add_served(
        self, *, twilio: Any = None, sendgrid: Any = None, shopmonkey: Any = None
    ) -> None:
        """Everything the fake providers handed out or received."""
        if shopmonkey is not None:
            for customer in shopmonkey.served_customers():
                self.add_customer(customer)
            self.add_secret(shopmonkey.api_key)
        if twilio is not None:
            for message in twilio.messages:
                self.add_phone(message["to"])
            self.add_secret(twilio.auth_token)
        if sendgrid is not None:
            for mail in sendgrid.mails:
                for p in mail["body"].get("personalizations", []):
                    for to in p.get("to", []):
                        self.add_email(to.get("email"))
                        self.add_name(to.get("name"))
            self.add_secret(sendgrid.api_key)

    # -- where to look ------------------------------------------------------------------

    def record(self, where: str, text: str | bytes) -> None:
        """An HTTP response body (or any other output) to scan later."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        self.texts.append((where, text))

    def record_log(self, path: Path) -> None:
        if not path.exists():
            return
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            self.texts.append((f"log {path.name}:{i}", line))

    # -- scanning -----------------------------------------------------------------------

    def leaks(self) -> list[Leak]:
        index = _Index.of(self)
        out: list[Leak] = []
        for where, text in self.texts:
            out.extend(self.scan(text, where, index))
        return out

    def scan(self, text: str, where: str = "text", index: _Index | None = None) -> list[Leak]:
        """Leaks in one text. Lookups are by index, not by trying every known value, so a
        long soak log with thousands of registered people scans in seconds."""
        index = index or _Index.of(self)
        phones_by_len, email_shapes = index.phones_by_len, index.email_shapes
        prefixes, longest = index.prefixes, index.longest
        found: list[Leak] = []
        seen: set[tuple[str, str]] = set()

        def hit(kind: str, value: str, form: str, start: int) -> None:
            if (kind, value) not in seen:
                seen.add((kind, value))
                found.append(Leak(where, kind, value, form[max(0, start - 60) : start + 60]))

        for form in _forms(text):
            lower = form.lower()
            at = lower.find("@")
            while at >= 0:
                for local, domain in email_shapes:
                    candidate = lower[max(0, at - local) : at + 1 + domain]
                    if candidate in self.emails:
                        hit("email", candidate, form, at - local)
                if lower[max(0, at - 3) : at] == "***":
                    for domain, known in prefixes.items():
                        if lower.startswith(domain, at + 1):
                            before = lower[max(0, at - 3 - longest) : at - 3]
                            shown = [before[-n:] for n in range(2, len(before) + 1)]
                            revealed = [x for x in shown if x in known]
                            if revealed:
                                hit(
                                    "email (partly masked)",
                                    f"{max(revealed, key=len)}***@{domain}",
                                    form,
                                    at,
                                )
                at = lower.find("@", at + 1)
            for secret in self.secrets:
                pos = form.find(secret)
                if pos >= 0:
                    hit("secret", secret, form, pos)
            for m in _DIGIT_RUN.finditer(form):
                digits = re.sub(r"\D", "", m.group(0))
                for size, phones in phones_by_len.items():
                    for i in range(len(digits) - size + 1):
                        phone = phones.get(digits[i : i + size])
                        if phone is not None:
                            hit("phone", phone, form, m.start())
            if self.names:
                for m in re.finditer(r"\w+", form):
                    if m.group(0) in self.names:
                        hit("name", m.group(0), form, m.start())
        return found

    def assert_clean(self) -> None:
        leaks = self.leaks()
        assert not leaks, f"{len(leaks)} leak(s) of personal data or secrets:\n" + "\n".join(
            str(leak) for leak in leaks[:20]
        )


@dataclass(frozen=True)
class _Index:
    """What `scan` looks values up in, built once per scan of many texts."""

    phones_by_len: dict[int, dict[str, str]]
    email_shapes: set[tuple[int, int]]  # (local part length, domain length)
    # Per domain, every prefix (2+ characters) of a registered local part: what a mask that
    # failed half-way leaves in front of its "***".
    prefixes: dict[str, set[str]]
    longest: int

    @classmethod
    def of(cls, scanner: PiiScanner) -> _Index:
        phones_by_len: dict[int, dict[str, str]] = {}
        for national, phone in scanner.phones.items():
            phones_by_len.setdefault(len(national), {})[national] = phone
        shapes, prefixes = set(), {}
        for e in scanner.emails:
            local, domain = e.split("@", 1)
            shapes.add((len(local), len(domain)))
            prefixes.setdefault(domain, set()).update(local[:n] for n in range(2, len(local) + 1))
        longest = max((len(e) for e in scanner.emails), default=0)
        return cls(phones_by_len, shapes, prefixes, longest)


def _forms(text: str) -> list[str]:
    """The text as given, and decoded the ways a value hides in it: JSON strings (a JSON
    document or one per line, as in the log) and URL encoding."""
    forms = [text]
    decoded: list[str] = []
    for chunk in (text, *text.splitlines()):
        try:
            decoded.extend(_strings(json.loads(chunk)))
        except ValueError:
            continue
    if decoded:
        forms.append("\n".join(decoded))
    if "%" in text or "+" in text:
        forms.append(unquote_plus(text, errors="replace"))
    return forms


def _strings(value: Any) -> Iterable[str]:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def _national_digits(phone: str) -> str | None:
    try:
        number = phonenumbers.parse(phone, "US")
    except phonenumbers.NumberParseException:
        digits = re.sub(r"\D", "", phone)
        return digits or None
    return str(number.national_number)


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []
