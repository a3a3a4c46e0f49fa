"""The configuration model: frozen dataclasses, and the one place each default is written.

Every key a config file may hold is a field here (see fields.py); the field says its default,
how the YAML value converts and what an error message says was expected. The rest of the code
receives a Config, never a dict.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from leadd.compliance import Window
from leadd.config import convert
from leadd.config.fields import (
    count,
    duration,
    flag,
    http_url,
    optional,
    phone_number,
    rate,
    required,
    setting,
    text,
)


@dataclass(frozen=True, kw_only=True)
class TenantConfig:
    id: uuid.UUID = field(metadata=required(convert.uuid_value, "a UUID"))
    name: str = field(metadata=required(convert.nonempty, "the business name"))


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    # None: embedded PostgreSQL under state_dir
    url: str | None = setting(None, convert.postgres_url, "a postgresql:// URL")
    pool_min: int = count(2)
    pool_max: int = count(10)
    connect_timeout: float = duration(10.0)


@dataclass(frozen=True, kw_only=True)
class HttpConfig:
    host: str = setting("127.0.0.1", convert.nonempty, "a host or IP to bind")
    port: int = setting(3000, convert.port, "a port number 0-65535")
    public_url: str = http_url("")  # default: http://{host}:{port}
    max_body_bytes: int = setting(1_048_576, convert.positive_int, "a positive number of bytes")
    # Slow clients (connections.py): a connection's next request headers, from its opening or
    # its previous answer; a request body, from the end of its headers; open connections.
    header_timeout: float = setting(30.0, convert.positive_duration, "a duration above 0")
    body_timeout: float = setting(30.0, convert.positive_duration, "a duration above 0")
    max_connections: int = count(256)

    def __post_init__(self) -> None:
        if not self.public_url:  # the URL providers call back on, when nothing else is said
            object.__setattr__(self, "public_url", f"http://{self.host}:{self.port}")


@dataclass(frozen=True, kw_only=True)
class ShopmonkeyConfig:
    base_url: str = http_url("https://api.shopmonkey.cloud/v3")
    api_key: str = text()
    webhook_secrets: tuple[str, ...] = setting((), convert.secret_list, "a list of secrets")
    poll_interval: float = duration(30.0)
    requests_per_second: float = rate(2.0)
    poll_lookback: float = duration(3600.0)  # first poll (no cursor yet) looks back this far
    # X-Shopmonkey-Signature (no timestamp, replayable): off unless deliveries need it.
    accept_legacy_signature: bool = flag(False)

    @property
    def live(self) -> bool:
        return bool(self.api_key)


@dataclass(frozen=True, kw_only=True)
class TwilioConfig:
    base_url: str = http_url("https://api.twilio.com")
    account_sid: str = text()
    auth_token: str = text()
    from_number: str | None = phone_number("+15125550199")
    messages_per_second: float = rate(1.0)

    @property
    def live(self) -> bool:
        return bool(self.account_sid and self.auth_token)


@dataclass(frozen=True, kw_only=True)
class SendgridConfig:
    base_url: str = http_url("https://api.sendgrid.com")
    api_key: str = text()
    from_email: str = setting("leads@example.com", convert.email, "an e-mail address")
    from_name: str = text()  # default: the tenant's name
    event_webhook_public_key: str = text(expected="a base64 key")

    @property
    def live(self) -> bool:
        return bool(self.api_key)


@dataclass(frozen=True, kw_only=True)
class TouchpointsConfig:
    interval: float = duration(10.0)
    concurrency: int = count(20)
    batch_size: int = count(50)
    lease: float = duration(60.0)  # a `sending` row whose lease expired belongs to a dead daemon
    max_attempts: int = count(8)
    retry_base: float = duration(30.0)
    retry_cap: float = duration(3600.0)
    # After an ambiguous send (timeout, connection error, 5xx: Twilio may have taken it), how
    # long before it is looked up in Twilio's message list: a message just created can take a
    # moment to show there, and a lookup that misses it would resend it. Seconds, not a lease.
    reconcile_delay: float = duration(5.0)


@dataclass(frozen=True, kw_only=True)
class ComplianceConfig:
    # The allowed window, recipient local time.
    quiet_hours: Window = setting(
        (9 * 60, 20 * 60), convert.window, '"HH:MM-HH:MM" (the allowed window)'
    )
    state_rules: Mapping[str, Mapping[int, Window | None]] = field(default_factory=dict)
    first_touch_immediate: bool = flag(True)
    max_sms_per_day: int = count(3)
    help_text: str = text()


@dataclass(frozen=True, kw_only=True)
class LeadsConfig:
    dedupe_window: float = duration(7 * 86400.0)
    # Older orders seen for the first time are not new leads.
    max_order_age: float = duration(3 * 86400.0)
    enrichment_retry: float = duration(300.0)
    default_region: str = setting("US", convert.region, "a two-letter region such as US")


@dataclass(frozen=True, kw_only=True)
class ChatConfig:
    base_url: str = http_url("")  # chat links are {base_url}/{token}; default {public_url}/c
    link_ttl: float = duration(30 * 86400.0)
    # Chat link tokens are derived from it (leadd/chatlinks.py). Empty: a random key
    # kept in {state_dir}/chat-link.key (chat_key.py); daemons on different hosts must share one.
    secret: str = setting("", convert.secret_key, "a random string of at least 32 characters")


@dataclass(frozen=True, kw_only=True)
class StaffUser:
    """Who may sign in to the inbox. An agent sees the locations listed; a manager sees all."""

    email: str = field(metadata=required(convert.email_address, "an e-mail address"))
    name: str = field(metadata=required(convert.nonempty, "the name customers see"))
    password_hash: str = field(
        metadata=required(convert.argon2id_hash, 'an Argon2id hash from "leadd hash-password"')
    )
    # None: every location
    locations: tuple[str, ...] | None = field(
        metadata=required(convert.staff_locations, 'a list of location ids, or "all"')
    )
    role: str = setting("agent", convert.choice("agent", "manager"), "agent or manager")

    def sees(self, location_id: str) -> bool:
        return self.visible is None or location_id in self.visible

    @property
    def visible(self) -> tuple[str, ...] | None:
        """The locations this person may see; None: all."""
        return None if self.role == "manager" else self.locations


@dataclass(frozen=True, kw_only=True)
class SequenceStep:
    name: str = field(metadata=optional(convert.nonempty, "a step name"))  # default: step<N>
    channel: str = field(metadata=required(convert.choice(*convert.CHANNELS), "sms or email"))
    delay: float = duration(0.0, 'a duration such as "0s", "2h", "1d"')
    after: str = setting("previous", convert.choice("created", "previous"), "created or previous")
    template: str = field(metadata=required(convert.nonempty, "the message text"))
    subject: str | None = setting(None, convert.nonempty, "an e-mail subject")
    only_in_states: tuple[str, ...] = setting(
        (), convert.lead_states, f"a list of lead states from {convert.LEAD_STATES}"
    )
    require_open: bool = flag(False)
    skip_if_unavailable: bool = flag(True)


@dataclass(frozen=True, kw_only=True)
class Service:
    name: str = field(metadata=required(convert.nonempty, "a service name"))
    price: float | None = setting(None, convert.price, "a price in dollars >= 0 (e.g. 49.99)")


@dataclass(frozen=True, kw_only=True)
class Location:
    id: str = field(metadata=required(convert.nonempty, "a short id such as 'downtown'"))
    name: str = field(metadata=required(convert.nonempty, "the location's display name"))
    timezone: str = field(
        metadata=required(convert.time_zone, "an IANA time zone such as America/Chicago")
    )
    phone: str | None = phone_number("+15125550100")
    address: str = text(expected="the physical street address")
    shopmonkey_location_id: str | None = setting(None, convert.text, "a string")
    hours: Mapping[int, tuple[Window, ...]] = field(default_factory=dict)
    services: tuple[Service, ...] = ()
    sequence: str = setting("default", convert.nonempty, "a sequence name")
    sms_from: str | None = phone_number("+15125550199")  # default: twilio.from_number


@dataclass(frozen=True)
class ApiToken:
    name: str  # recorded as the actor of what the token does
    token: str = field(repr=False)  # never printed, never logged
    role: str = "read"  # read | write


@dataclass(frozen=True)
class ApiConfig:
    tokens: tuple[ApiToken, ...] = ()  # none: the ops API (/api/v1) is off


@dataclass(frozen=True, kw_only=True)
class LoggingConfig:
    level: str = setting(
        "info", convert.choice("debug", "info", "warning", "error"), "debug|info|warning|error"
    )
    format: str = setting("json", convert.choice("json", "console"), "json or console")


@dataclass(frozen=True, kw_only=True)
class Config:
    tenant: TenantConfig
    locations: tuple[Location, ...]
    state_dir: Path = setting(Path("./var/leadd"), convert.directory, "a directory path")
    database: DatabaseConfig = DatabaseConfig()
    http: HttpConfig = HttpConfig()
    demo_mode: bool = flag(False)
    shopmonkey: ShopmonkeyConfig = ShopmonkeyConfig()
    twilio: TwilioConfig = TwilioConfig()
    sendgrid: SendgridConfig = SendgridConfig()
    touchpoints: TouchpointsConfig = TouchpointsConfig()
    compliance: ComplianceConfig = ComplianceConfig()
    leads: LeadsConfig = LeadsConfig()
    chat: ChatConfig = ChatConfig()
    staff: tuple[StaffUser, ...] = ()
    sequences: Mapping[str, tuple[SequenceStep, ...]] = field(default_factory=dict)
    logging: LoggingConfig = LoggingConfig()
    api: ApiConfig = ApiConfig()
    shutdown_timeout: float = duration(10.0)
    source: str = "<built-in demo>"

    def staff_user(self, email: str) -> StaffUser | None:
        wanted = email.strip().lower()
        return next((s for s in self.staff if s.email == wanted), None)

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
