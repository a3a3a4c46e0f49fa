"""YAML -> frozen, typed Config. One loader; every error names the file, the key path and the fix.

Units are converted once here ("30s" -> 30.0 seconds, "09:00-18:00" -> minutes), so the rest
of the code never parses config strings. Unknown keys are errors: a typo must never silently
disable a feature.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import yaml

from leadd.compliance import Window, parse_window

T = TypeVar("T")

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LEAD_STATES = ("new", "contacted", "engaged", "qualified", "appointment_set", "completed", "lost")
CHANNELS = ("sms", "email")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}")


class ConfigError(Exception):
    """Every problem found in one pass, each naming file, key path, expectation and value."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class TenantConfig:
    id: uuid.UUID
    name: str


@dataclass(frozen=True)
class DatabaseConfig:
    url: str | None  # None: embedded PostgreSQL under state_dir
    pool_min: int = 2
    pool_max: int = 10
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 3000
    public_url: str = "http://127.0.0.1:3000"
    max_body_bytes: int = 1_048_576


@dataclass(frozen=True)
class ShopmonkeyConfig:
    base_url: str = "https://api.shopmonkey.cloud/v3"
    api_key: str = ""
    webhook_secrets: tuple[str, ...] = ()
    poll_interval: float = 30.0
    requests_per_second: float = 2.0
    poll_lookback: float = 3600.0  # first poll (no cursor yet) looks back this far

    @property
    def live(self) -> bool:
        return bool(self.api_key)


@dataclass(frozen=True)
class TwilioConfig:
    base_url: str = "https://api.twilio.com"
    account_sid: str = ""
    auth_token: str = ""
    from_number: str | None = None
    messages_per_second: float = 1.0

    @property
    def live(self) -> bool:
        return bool(self.account_sid and self.auth_token)


@dataclass(frozen=True)
class SendgridConfig:
    base_url: str = "https://api.sendgrid.com"
    api_key: str = ""
    from_email: str = "leads@example.com"
    from_name: str = ""
    event_webhook_public_key: str = ""

    @property
    def live(self) -> bool:
        return bool(self.api_key)


@dataclass(frozen=True)
class TouchpointsConfig:
    interval: float = 10.0
    concurrency: int = 20
    batch_size: int = 50
    lease: float = 60.0  # a `sending` row whose lease expired belongs to a dead daemon
    max_attempts: int = 8
    retry_base: float = 30.0
    retry_cap: float = 3600.0


@dataclass(frozen=True)
class ComplianceConfig:
    quiet_hours: Window = (9 * 60, 20 * 60)  # allowed window, recipient local time
    state_rules: Mapping[str, Mapping[int, Window | None]] = field(default_factory=dict)
    first_touch_immediate: bool = True
    max_sms_per_day: int = 3
    help_text: str = ""


@dataclass(frozen=True)
class LeadsConfig:
    dedupe_window: float = 7 * 86400.0
    max_order_age: float = 3 * 86400.0  # older orders seen for the first time are not new leads
    enrichment_retry: float = 300.0
    default_region: str = "US"


@dataclass(frozen=True)
class ChatConfig:
    base_url: str | None = None  # chat links are {base_url}/{token}


@dataclass(frozen=True)
class SequenceStep:
    name: str
    channel: str
    delay: float
    after: str  # "created" | "previous"
    template: str
    subject: str | None = None
    only_in_states: tuple[str, ...] = ()
    require_open: bool = False
    skip_if_unavailable: bool = True


@dataclass(frozen=True)
class Service:
    name: str
    price: float | None


@dataclass(frozen=True)
class Location:
    id: str
    name: str
    timezone: str
    phone: str | None = None
    address: str = ""
    shopmonkey_location_id: str | None = None
    hours: Mapping[int, tuple[Window, ...]] = field(default_factory=dict)
    services: tuple[Service, ...] = ()
    sequence: str = "default"
    sms_from: str | None = None


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: str = "json"


@dataclass(frozen=True)
class Config:
    tenant: TenantConfig
    locations: tuple[Location, ...]
    state_dir: Path = Path("./var/leadd")
    database: DatabaseConfig = DatabaseConfig(url=None)
    http: HttpConfig = HttpConfig()
    demo_mode: bool = False
    shopmonkey: ShopmonkeyConfig = ShopmonkeyConfig()
    twilio: TwilioConfig = TwilioConfig()
    sendgrid: SendgridConfig = SendgridConfig()
    touchpoints: TouchpointsConfig = TouchpointsConfig()
    compliance: ComplianceConfig = ComplianceConfig()
    leads: LeadsConfig = LeadsConfig()
    chat: ChatConfig = ChatConfig()
    sequences: Mapping[str, tuple[SequenceStep, ...]] = field(default_factory=dict)
    logging: LoggingConfig = LoggingConfig()
    shutdown_timeout: float = 10.0
    source: str = "<built-in demo>"

    def location(self, location_id: str | None) -> Location | None:
        return next((loc for loc in self.locations if loc.id == location_id), None)

    def location_for_shopmonkey(self, sm_location_id: str | None) -> Location:
        """The configured location for a Shopmonkey locationId; the first one when unknown."""
        for loc in self.locations:
            if sm_location_id and loc.shopmonkey_location_id == sm_location_id:
                return loc
        return self.locations[0]

    def providers_summary(self) -> dict[str, str]:
        return {
            "shopmonkey": "live" if self.shopmonkey.live else "disabled (no api_key: no polling)",
            "twilio": "live" if self.twilio.live else "dry-run",
            "sendgrid": "live" if self.sendgrid.live else "dry-run",
        }


# --------------------------------------------------------------------------- parsing helpers


def parse_duration(value: Any) -> float:
    """ "30s", "5m", "2h", "1d", "250ms" or a bare number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


class _Node:
    """A position in the YAML document: reads typed keys and remembers which were used."""

    def __init__(self, ctx: _Ctx, path: str, data: Any) -> None:
        self.ctx, self.path, self.data = ctx, path, data
        self.used: set[str] = set()
        self.ok = isinstance(data, Mapping)
        if data is not None and not self.ok:
            ctx.error(path or "(top level)", "a mapping", data)

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key) if self.ok else None

    def has(self, key: str) -> bool:
        return self.ok and key in self.data and self.data[key] is not None

    def get(self, key: str, conv: Callable[[Any], T], expected: str, default: T) -> T:
        value = self.raw(key)
        if value is None:
            return default
        try:
            return conv(value)
        except _Unquoted as exc:
            self.ctx.problem(self._key(key), f"expected {expected}, got {value!r} ({exc})")
            return default
        except (ValueError, TypeError):
            self.ctx.error(self._key(key), expected, value)
            return default

    def req(self, key: str, conv: Callable[[Any], T], expected: str, default: T) -> T:
        if not self.has(key):
            self.ctx.problem(self._key(key), f"required: expected {expected}")
            self.raw(key)
            return default
        return self.get(key, conv, expected, default)

    def child(self, key: str) -> _Node:
        return _Node(self.ctx, self._key(key), self.raw(key))

    def items(self, key: str) -> list[_Node]:
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.ctx.error(self._key(key), "a list", value)
            return []
        return [_Node(self.ctx, f"{self._key(key)}[{i}]", v) for i, v in enumerate(value)]

    def done(self) -> None:
        if not self.ok:
            return
        for key in self.data:
            if key not in self.used:
                near = _closest(str(key), self.used)
                hint = f" (did you mean '{near}'?)" if near else ""
                allowed = ", ".join(sorted(self.used))
                self.ctx.problem(self._key(str(key)), f"unknown key{hint}; allowed here: {allowed}")


class _Ctx:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{self.source}: {path}: {message}")

    def error(self, path: str, expected: str, got: Any) -> None:
        self.problem(path, f"expected {expected}, got {got!r}")


def _closest(key: str, candidates: set[str]) -> str | None:
    import difflib

    hits = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.75)
    return hits[0] if hits else None


def _str(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise ValueError
    return str(v)


def _nonempty(v: Any) -> str:
    s = _str(v).strip()
    if not s:
        raise ValueError
    return s


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError
    return v


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError
    return v


def _pos_int(v: Any) -> int:
    i = _int(v)
    if i <= 0:
        raise ValueError
    return i


def _pos_float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        raise ValueError
    return float(v)


def _port(v: Any) -> int:
    i = _int(v)
    if not 0 <= i <= 65535:
        raise ValueError
    return i


def _url(v: Any) -> str:
    s = _str(v).strip().rstrip("/")
    u = urlparse(s)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError
    return s


def _db_url(v: Any) -> str:
    s = _str(v).strip()
    if urlparse(s).scheme not in ("postgres", "postgresql"):
        raise ValueError
    return s


def _uuid(v: Any) -> uuid.UUID:
    return uuid.UUID(_str(v))


def _tz(v: Any) -> str:
    s = _str(v)
    try:
        ZoneInfo(s)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError from exc
    return s


class _Unquoted(ValueError):
    """A value YAML turned into a number because it was not quoted."""


def _phone(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        raise _Unquoted("YAML reads an unquoted +15125550100 as a number: quote it")
    s = _str(v).strip()
    try:
        num = phonenumbers.parse(s, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError from exc
    if not s.startswith("+") or not phonenumbers.is_valid_number(num):
        raise ValueError
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def _email(v: Any) -> str:
    s = _str(v).strip()
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", s):
        raise ValueError
    return s


def _duration(v: Any) -> float:
    return parse_duration(v)


def _choice(*options: str) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        s = _str(v)
        if s not in options:
            raise ValueError
        return s

    return conv


def _str_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list):
        raise ValueError
    out = tuple(_nonempty(x) for x in v)
    return out


def _secret_list(v: Any) -> tuple[str, ...]:
    """Like _str_list, but empty entries (an unset ${VAR:-}) are dropped, not errors."""
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list):
        raise ValueError
    return tuple(s for s in (_str(x).strip() for x in v) if s)


# --------------------------------------------------------------------------- env substitution


def _substitute_env(data: Any, env: Mapping[str, str], ctx: _Ctx, path: str = "") -> Any:
    if isinstance(data, str):

        def repl(m: re.Match[str]) -> str:
            name, has_default, default = m.group(1), m.group(2), m.group(3)
            if name in env:
                return env[name]
            if has_default is not None:
                return default or ""
            ctx.problem(
                path or "(top level)",
                f"environment variable {name} is not set; set it, or write ${{{name}:-}} "
                "to allow it to be empty",
            )
            return ""

        return _ENV.sub(repl, data)
    if isinstance(data, Mapping):
        return {
            k: _substitute_env(v, env, ctx, f"{path}.{k}" if path else str(k))
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_substitute_env(v, env, ctx, f"{path}[{i}]") for i, v in enumerate(data)]
    return data


# --------------------------------------------------------------------------- sections


def _hours(node: _Node) -> dict[int, tuple[Window, ...]]:
    out: dict[int, tuple[Window, ...]] = {}
    for i, day in enumerate(WEEKDAYS):
        value = node.raw(day)
        if value is None or value == "closed":
            continue
        shifts = value if isinstance(value, list) else str(value).split(",")
        windows: list[Window] = []
        for shift in shifts:
            try:
                windows.append(parse_window(str(shift)))
            except ValueError:
                node.ctx.error(node._key(day), '"HH:MM-HH:MM", a list of them, or "closed"', value)
                break
        out[i] = tuple(windows)
    node.done()
    return out


def _services(node: _Node, key: str) -> tuple[Service, ...]:
    out = []
    for item in node.items(key):
        name = item.req("name", _nonempty, "a service name", "")
        price = item.get("price", _price, "a price in dollars >= 0 (e.g. 49.99)", None)
        item.done()
        out.append(Service(name=name, price=price))
    return tuple(out)


def _price(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise ValueError
    return round(float(v), 2)


def _location(node: _Node, sms_default: str | None) -> Location:
    hours_node = node.child("hours")
    loc = Location(
        id=node.req("id", _nonempty, "a short id such as 'downtown'", ""),
        name=node.req("name", _nonempty, "the location's display name", ""),
        timezone=node.req("timezone", _tz, "an IANA time zone such as America/Chicago", "UTC"),
        phone=node.get("phone", _phone, 'an E.164 phone such as "+15125550100"', None),
        address=node.get("address", _str, "the physical street address", ""),
        shopmonkey_location_id=node.get("shopmonkey_location_id", _str, "a string", None),
        hours=_hours(hours_node) if hours_node.ok else {},
        services=_services(node, "services"),
        sequence=node.get("sequence", _nonempty, "a sequence name", "default"),
        sms_from=node.get("sms_from", _phone, 'an E.164 phone such as "+15125550199"', None)
        or sms_default,
    )
    node.done()
    return loc


def _step(node: _Node, index: int) -> SequenceStep:
    channel = node.req("channel", _choice(*CHANNELS), "sms or email", "sms")
    step = SequenceStep(
        name=node.get("name", _nonempty, "a step name", f"step{index + 1}"),
        channel=channel,
        delay=node.get("delay", _duration, 'a duration such as "0s", "2h", "1d"', 0.0),
        after=node.get("after", _choice("created", "previous"), "created or previous", "previous"),
        template=node.req("template", _nonempty, "the message text", ""),
        subject=node.get("subject", _nonempty, "an e-mail subject", None),
        only_in_states=node.get(
            "only_in_states", _states, f"a list of lead states from {LEAD_STATES}", ()
        ),
        require_open=node.get("require_open", _bool, "true or false", False),
        skip_if_unavailable=node.get("skip_if_unavailable", _bool, "true or false", True),
    )
    if channel == "email" and not step.subject:
        node.ctx.problem(node._key("subject"), "required for an email step: expected a subject")
    node.done()
    return step


def _states(v: Any) -> tuple[str, ...]:
    states = _str_list(v)
    if any(s not in LEAD_STATES for s in states):
        raise ValueError
    return states


def _state_rules(node: _Node) -> dict[str, dict[int, Window | None]]:
    out: dict[str, dict[int, Window | None]] = {}
    if not node.ok:
        return out
    for state in list(node.data):
        day_node = node.child(str(state))
        if not re.fullmatch(r"[A-Z]{2}", str(state)):
            node.ctx.error(day_node.path, "a two-letter US state code such as TX", state)
        rules: dict[int, Window | None] = {}
        for i, day in enumerate(WEEKDAYS):
            value = day_node.raw(day)
            if value is None:
                continue
            if value == "closed":
                rules[i] = None
                continue
            try:
                rules[i] = parse_window(str(value))
            except ValueError:
                node.ctx.error(day_node._key(day), '"HH:MM-HH:MM" or "closed"', value)
        day_node.done()
        out[str(state)] = rules
    return out


def _window(v: Any) -> Window:
    return parse_window(_str(v))


# --------------------------------------------------------------------------- entry points

DEFAULT_SEQUENCE: tuple[SequenceStep, ...] = (
    SequenceStep(
        name="instant_ack",
        channel="sms",
        delay=0.0,
        after="created",
        template=(
            'Hi {{ customer.first_name | default("there") }}, thanks for your request at '
            '{{ location.name }}! We\'re reviewing {{ services.names | default("your estimate") }} '
            'for your {{ vehicle.description | default("vehicle") }} and will follow up shortly. '
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
            # Alone on its line: without chat.base_url there is no link, and no line.
            '{{ chat.link | default("") }}\n'
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


def build(
    data: Any,
    source: str = "<built-in demo>",
    env: Mapping[str, str] | None = None,
    validate_templates: Callable[[Config], list[str]] | None = None,
) -> Config:
    """Turn parsed YAML into a Config, or raise ConfigError listing every problem."""
    ctx = _Ctx(source)
    data = _substitute_env(data, os.environ if env is None else env, ctx)
    root = _Node(ctx, "", data)
    if not root.ok:
        raise ConfigError(ctx.problems or [f"{source}: (top level): expected a mapping"])

    t = root.child("tenant")
    tenant = TenantConfig(
        id=t.req("id", _uuid, "a UUID", uuid.UUID(int=0)),
        name=t.req("name", _nonempty, "the business name", ""),
    )
    t.done()

    d = root.child("database")
    database = DatabaseConfig(
        url=d.get("url", _db_url, "a postgresql:// URL", None) if d.raw("url") != "" else None,
        pool_min=d.get("pool_min", _pos_int, "a positive integer", 2),
        pool_max=d.get("pool_max", _pos_int, "a positive integer", 10),
        connect_timeout=d.get("connect_timeout", _duration, "a duration", 10.0),
    )
    d.done()

    h = root.child("http")
    http = HttpConfig(
        host=h.get("host", _nonempty, "a host or IP to bind", "127.0.0.1"),
        port=h.get("port", _port, "a port number 0-65535", 3000),
        public_url=h.get("public_url", _url, "an http(s):// URL", ""),
        max_body_bytes=h.get("max_body_bytes", _pos_int, "a positive number of bytes", 1_048_576),
    )
    if not http.public_url:
        http = HttpConfig(
            http.host, http.port, f"http://{http.host}:{http.port}", http.max_body_bytes
        )
    h.done()

    s = root.child("shopmonkey")
    shopmonkey = ShopmonkeyConfig(
        base_url=s.get("base_url", _url, "an http(s):// URL", ShopmonkeyConfig.base_url),
        api_key=s.get("api_key", _str, "a string", ""),
        webhook_secrets=s.get("webhook_secrets", _secret_list, "a list of secrets", ()),
        poll_interval=s.get("poll_interval", _duration, 'a duration such as "30s"', 30.0),
        requests_per_second=s.get("requests_per_second", _pos_float, "a positive number", 2.0),
        poll_lookback=s.get("poll_lookback", _duration, 'a duration such as "1h"', 3600.0),
    )
    s.done()

    w = root.child("twilio")
    twilio = TwilioConfig(
        base_url=w.get("base_url", _url, "an http(s):// URL", TwilioConfig.base_url),
        account_sid=w.get("account_sid", _str, "a string", ""),
        auth_token=w.get("auth_token", _str, "a string", ""),
        from_number=w.get("from_number", _phone, 'an E.164 phone such as "+15125550199"', None),
        messages_per_second=w.get("messages_per_second", _pos_float, "a positive number", 1.0),
    )
    w.done()

    g = root.child("sendgrid")
    sendgrid = SendgridConfig(
        base_url=g.get("base_url", _url, "an http(s):// URL", SendgridConfig.base_url),
        api_key=g.get("api_key", _str, "a string", ""),
        from_email=g.get("from_email", _email, "an e-mail address", "leads@example.com"),
        from_name=g.get("from_name", _str, "a string", tenant.name),
        event_webhook_public_key=g.get("event_webhook_public_key", _str, "a base64 key", ""),
    )
    g.done()

    tp = root.child("touchpoints")
    touchpoints = TouchpointsConfig(
        interval=tp.get("interval", _duration, 'a duration such as "10s"', 10.0),
        concurrency=tp.get("concurrency", _pos_int, "a positive integer", 20),
        batch_size=tp.get("batch_size", _pos_int, "a positive integer", 50),
        lease=tp.get("lease", _duration, 'a duration such as "60s"', 60.0),
        max_attempts=tp.get("max_attempts", _pos_int, "a positive integer", 8),
        retry_base=tp.get("retry_base", _duration, 'a duration such as "30s"', 30.0),
        retry_cap=tp.get("retry_cap", _duration, 'a duration such as "1h"', 3600.0),
    )
    tp.done()

    c = root.child("compliance")
    compliance = ComplianceConfig(
        quiet_hours=c.get(
            "quiet_hours", _window, '"HH:MM-HH:MM" (the allowed window)', (540, 1200)
        ),
        state_rules=_state_rules(c.child("state_rules")),
        first_touch_immediate=c.get("first_touch_immediate", _bool, "true or false", True),
        max_sms_per_day=c.get("max_sms_per_day", _pos_int, "a positive integer", 3),
        help_text=c.get("help_text", _str, "a string", ""),
    )
    c.done()
    try:
        from leadd.compliance import DEFAULT_STATE_RULES, QuietHours

        QuietHours(compliance.quiet_hours, {**DEFAULT_STATE_RULES, **compliance.state_rules})
    except ValueError as exc:
        text = str(exc)
        where = "compliance.quiet_hours" if text.startswith("default") else "compliance.state_rules"
        ctx.problem(where, text.removeprefix("default: "))

    ld = root.child("leads")
    leads = LeadsConfig(
        dedupe_window=ld.get("dedupe_window", _duration, 'a duration such as "7d"', 7 * 86400.0),
        max_order_age=ld.get("max_order_age", _duration, 'a duration such as "3d"', 3 * 86400.0),
        enrichment_retry=ld.get("enrichment_retry", _duration, "a duration", 300.0),
        default_region=ld.get("default_region", _region, "a two-letter region such as US", "US"),
    )
    ld.done()

    ch = root.child("chat")
    chat = ChatConfig(base_url=ch.get("base_url", _url, "an http(s):// URL", None))
    ch.done()

    sequences: dict[str, tuple[SequenceStep, ...]] = {}
    sq = root.child("sequences")
    if sq.ok:
        for name in list(sq.data):
            steps = sq.items(str(name))
            if not steps:
                ctx.problem(f"sequences.{name}", "expected a non-empty list of steps")
            sequences[str(name)] = tuple(_step(n, i) for i, n in enumerate(steps))
    sequences.setdefault("default", DEFAULT_SEQUENCE)

    locations = tuple(_location(n, twilio.from_number) for n in root.items("locations"))
    if not locations:
        ctx.problem("locations", "required: expected at least one location")
    seen: set[str] = set()
    for i, loc in enumerate(locations):
        if loc.id in seen:
            ctx.problem(
                f"locations[{i}].id", f"duplicate location id {loc.id!r}; ids must be unique"
            )
        seen.add(loc.id)
        if loc.sequence not in sequences:
            ctx.problem(
                f"locations[{i}].sequence",
                f"unknown sequence {loc.sequence!r}; defined: {', '.join(sorted(sequences))}",
            )

    lg = root.child("logging")
    logging_cfg = LoggingConfig(
        level=lg.get(
            "level",
            _choice("debug", "info", "warning", "error"),
            "debug|info|warning|error",
            "info",
        ),
        format=lg.get("format", _choice("json", "console"), "json or console", "json"),
    )
    lg.done()

    cfg = Config(
        tenant=tenant,
        locations=locations,
        state_dir=Path(root.get("state_dir", _nonempty, "a directory path", "./var/leadd")),
        database=database,
        http=http,
        demo_mode=root.get("demo_mode", _bool, "true or false", False),
        shopmonkey=shopmonkey,
        twilio=twilio,
        sendgrid=sendgrid,
        touchpoints=touchpoints,
        compliance=compliance,
        leads=leads,
        chat=chat,
        sequences=sequences,
        logging=logging_cfg,
        shutdown_timeout=root.get("shutdown_timeout", _duration, 'a duration such as "10s"', 10.0),
        source=source,
    )
    root.done()
    if not ctx.problems and validate_templates is not None:
        ctx.problems.extend(f"{source}: {p}" for p in validate_templates(cfg))
    if ctx.problems:
        raise ConfigError(ctx.problems)
    return cfg


def warnings(cfg: Config) -> list[str]:
    """Valid but probably unintended settings, for `check-config` and the start-up log."""
    out = []
    if not cfg.shopmonkey.webhook_secrets:
        out.append(
            "shopmonkey.webhook_secrets is empty: every order webhook will be rejected (401)"
        )
    host = urlparse(cfg.http.public_url).hostname or ""
    if (cfg.twilio.live or cfg.sendgrid.live) and host in ("127.0.0.1", "localhost", "::1"):
        out.append(
            f"http.public_url is {cfg.http.public_url}: providers cannot reach it, so inbound "
            "SMS, status callbacks and unsubscribe links will not work; set the public URL"
        )
    if cfg.demo_mode:
        out.append(
            "demo_mode is on: only test contacts (+1555..., test/demo e-mails) are processed"
        )
    return out


def _region(v: Any) -> str:
    s = _str(v).upper()
    if s not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError
    return s


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a YAML config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [f"{p}: file not found; pass --config PATH or set LEADD_CONFIG"]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{p}: cannot read: {exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{p}: {where}invalid YAML: {problem}"]) from None
    return build(data, source=str(p), env=env, validate_templates=_template_check())


def demo(env: Mapping[str, str] | None = None) -> Config:
    return build(DEMO_CONFIG, env=env, validate_templates=_template_check())


def _template_check() -> Callable[[Config], list[str]] | None:
    try:
        from leadd import sequences as seq  # imported lazily: sequences imports this module
    except ImportError:
        return None
    return seq.validate_config_templates


def resolve_path(cli_path: str | None, env: Mapping[str, str] | None = None) -> Path | None:
    """--config, else $LEADD_CONFIG, else ./config.yaml if present, else None (demo)."""
    env = os.environ if env is None else env
    if cli_path:
        return Path(cli_path)
    if env.get("LEADD_CONFIG"):
        return Path(env["LEADD_CONFIG"])
    default = Path("config.yaml")
    return default if default.exists() else None
