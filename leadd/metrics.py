"""Every Prometheus metric leadd exports, declared once, on leadd's own registry.

Names carry the `leadd_` prefix and base units (seconds, Unix timestamps); counters end in
`_total`. Every label is a bounded set: route templates, query names, configured location ids,
provider names and the fixed vocabularies below. Never a lead id, phone, e-mail or name.
`packaging/prometheus/alerts.yml` and `packaging/grafana/leadd.json` are written against these
names, and tests/unit/test_packaging.py checks that every name they use is exported here.

Call sites stay one line (`metrics.X.labels(...).inc()` or one function below); the mapping
from provider and loop terms to metric terms lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from leadd import __version__

if TYPE_CHECKING:
    from asyncpg import Record


class SendOutcome(Protocol):
    """What metrics read of a provider's send result (plumbing knows no provider types)."""

    @property
    def dry_run(self) -> bool: ...
    @property
    def latency(self) -> float: ...
    @property
    def http_status(self) -> int | None: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def outcome(self) -> str: ...


# A touch point still `scheduled` this long after its due time is overdue: the send loop is
# not keeping up, or the lead is stuck waiting for enrichment. Quiet hours, caps and retries
# move `due_at` forward, so waiting for them never counts as overdue.
OVERDUE_AFTER = 300.0

PROVIDERS = ("shopmonkey", "twilio", "sendgrid")
CHANNELS = ("sms", "email")
# leadd_messages_total{outcome}. At send time each message counts once as one of
#   accepted  the provider took it (HTTP 2xx; not yet delivered)
#   dry_run   recorded only: the provider has no credentials
#   rejected  the provider refused it (4xx: invalid number, carrier opt-out, bad key), or
#             it kept failing transiently until the attempts ran out
#   unsendable  leadd could not send it: no address for the channel, a template error, or
#             a row found over max_attempts when claimed (after crash recovery)
#   skipped   not sent by rule (lead moved on, step removed, no address and skip_if_unavailable)
#   retry     a transient failure; the same message is tried again later
# and later, from Twilio status callbacks and SendGrid events, an accepted message counts once
# more with its delivery outcome: delivered, undelivered (SMS), failed (the provider accepted
# it, then could not send it: Twilio `failed`, SendGrid `dropped`) or bounced (e-mail).
# So: delivery rate = delivered / accepted; provider failure ratio =
# (rejected + failed + undelivered + bounced) / (accepted + rejected), each message once.
SEND_OUTCOMES = ("accepted", "dry_run", "rejected", "unsendable", "skipped", "retry", "unknown")
DELIVERY_OUTCOMES = ("delivered", "undelivered", "failed", "bounced")
# SendResult.outcome (or dry_run), as counted above.
_SEND_OUTCOME = {
    "sent": "accepted",
    "dry_run": "dry_run",
    "retry": "retry",
    "failed": "rejected",
    "unknown": "unknown",
}
# A touch point that ended without a send call: its state, as counted above.
_UNSENT_OUTCOME = {"skipped": "skipped", "failed": "unsendable"}
# Twilio MessageStatus -> delivery outcome (the rest are steps on the way: queued, sent, ...).
_TWILIO_FINAL = {"delivered": "delivered", "undelivered": "undelivered", "failed": "failed"}
# SendGrid event -> delivery outcome (deferred is transient; open/click are not delivery).
_SENDGRID_FINAL = {"delivered": "delivered", "bounce": "bounced", "dropped": "failed"}
# What each provider answers when the credentials are wrong (Twilio 20003 comes with a 401).
_AUTH_STATUSES = {"twilio": frozenset({401}), "sendgrid": frozenset({401, 403})}

disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series double the output for no use here
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

BUILD = Info("leadd_build", "leadd build information.", registry=REGISTRY)
BUILD.info({"version": __version__})

# ---------------------------------------------------------------- process and loops

TASK_RESTARTS = Counter(
    "leadd_task_restarts_total",
    "Supervised tasks restarted after a crash.",
    ["task"],
    registry=REGISTRY,
)
TASK_UP = Gauge(
    "leadd_task_up", "1 while a supervised task is running.", ["task"], registry=REGISTRY
)
LOOP_LAST_RUN = Gauge(
    "leadd_loop_last_run_timestamp_seconds",
    "Unix time a periodic loop last completed a cycle.",
    ["loop"],
    registry=REGISTRY,
)
LOOP_INTERVAL = Gauge(
    "leadd_loop_interval_seconds",
    "Configured period of a periodic loop (the poll loop only while polling is enabled), "
    "so alerts can say 'stale for 3 intervals' without knowing the config.",
    ["loop"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "leadd_http_request_duration_seconds",
    "HTTP request handling time by route and status.",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
STORE_DURATION = Histogram(
    "leadd_store_operation_duration_seconds",
    "Time of one named store operation (the query name in sql/queries.sql), pool wait included.",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
    registry=REGISTRY,
)
STORE_BATCH_ROWS = Histogram(
    "leadd_store_batch_rows",
    "Rows per group-commit statement of more than one row (one statement, one commit).",
    ["batch"],
    buckets=(2, 4, 8, 16, 32, 64, 100),
    registry=REGISTRY,
)
STORE_BATCH_SPLITS = Counter(
    "leadd_store_batch_splits_total",
    "Group-commit statements the database refused on a row's data, split in halves until "
    "the refused row fails alone.",
    ["batch"],
    registry=REGISTRY,
)

DB_STATEMENTS = Counter(
    "leadd_db_statements_total",
    "Statements sent to PostgreSQL by the store's pool, BEGIN and COMMIT included: one round "
    "trip each. Work per lead shows as this counter's rate over leads ingested.",
    registry=REGISTRY,
)

# ---------------------------------------------------------------- intake

LEADS_INGESTED = Counter(
    "leadd_leads_ingested_total",
    "Order events ingested, by source and result (created, duplicate, updated, stale, ignored).",
    ["source", "result"],
    registry=REGISTRY,
)
LEADS_CREATED = Counter(
    "leadd_leads_created_total",
    "New leads, by source (webhook, poll) and configured location id.",
    ["source", "location"],
    registry=REGISTRY,
)
WEBHOOKS_REJECTED = Counter(
    "leadd_webhooks_rejected_total",
    "Provider webhooks rejected, by provider and reason class.",
    ["provider", "reason"],
    registry=REGISTRY,
)
HTTP_CONNECTIONS = Gauge(
    "leadd_http_connections", "Client connections open to the HTTP server.", registry=REGISTRY
)
HTTP_CONNECTIONS_CLOSED = Counter(
    "leadd_http_connections_closed_total",
    "Client connections leadd closed on its own, by reason (header_timeout, idle, "
    "body_timeout, evicted, refused).",
    ["reason"],
    registry=REGISTRY,
)
POLL_CYCLES = Counter(
    "leadd_poll_cycles_total", "Shopmonkey poll cycles by status.", ["status"], registry=REGISTRY
)
POLL_DURATION = Histogram(
    "leadd_poll_duration_seconds",
    "Duration of Shopmonkey poll cycles that ran (not those skipped: disabled or not leader).",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=REGISTRY,
)
POLL_LAST_SUCCESS = Gauge(
    "leadd_poll_last_success_timestamp_seconds",
    "Unix time of the last successful Shopmonkey poll cycle (0: none since start).",
    registry=REGISTRY,
)

# ---------------------------------------------------------------- outreach

MESSAGES = Counter(
    "leadd_messages_total",
    "Outbound messages by channel and outcome: at send accepted, dry_run, rejected, "
    "unsendable, skipped or retry; later delivered, undelivered, failed or bounced "
    "(provider callbacks); unknown: a send in doubt that could not be confirmed with the "
    "provider (never resent).",
    ["channel", "outcome"],
    registry=REGISTRY,
)
PROVIDER_RETRIES = Counter(
    "leadd_provider_retries_total",
    "Provider API calls tried again after a transient failure, by provider and reason "
    "(throttled: 429 or an edge 403; server: 5xx; transport: timeout or connection error).",
    ["provider", "reason"],
    registry=REGISTRY,
)
PROVIDER_LATENCY = Histogram(
    "leadd_provider_request_duration_seconds",
    "Provider API call latency.",
    ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
PROVIDER_AUTH_FAILED = Gauge(
    "leadd_provider_auth_failed",
    "1 while a provider rejects leadd's credentials (its last call failed authentication).",
    ["provider"],
    registry=REGISTRY,
)
SPEED_TO_LEAD = Histogram(
    "leadd_speed_to_lead_seconds",
    "Lead creation to its first message accepted by the provider.",
    # The promise is seconds; the alert line is 60 s; quiet hours can push it to an hour.
    buckets=(0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
ENRICHMENT_FAILURES = Counter(
    "leadd_enrichment_failures_total",
    "Failed enrichment attempts of one lead, by reason (provider, database, data, internal).",
    ["reason"],
    registry=REGISTRY,
)
ENRICHMENT_GIVEN_UP = Counter(
    "leadd_enrichment_given_up_total",
    "Leads whose enrichment failed too often and is now 'failed'.",
    registry=REGISTRY,
)
ORDERS_REJECTED = Counter(
    "leadd_orders_rejected_total",
    "Orders refused at intake, first sighting only, by source (webhook, poll) and reason "
    "(invalid: failed validation; unstorable: the database refused this one order).",
    ["source", "reason"],
    registry=REGISTRY,
)
TOUCHPOINTS_DUE = Gauge(
    "leadd_touchpoints_due",
    "Touch points due and not yet claimed (refreshed by the touch-point loop).",
    registry=REGISTRY,
)
TOUCHPOINTS_OVERDUE = Gauge(
    "leadd_touchpoints_overdue",
    f"Touch points still scheduled more than {OVERDUE_AFTER:g} s after they were due.",
    registry=REGISTRY,
)
TOUCHPOINTS_UNCONFIRMED = Gauge(
    "leadd_touchpoints_unconfirmed",
    "Touch points in state unknown: maybe sent, could not be confirmed, never resent.",
    registry=REGISTRY,
)
RECONCILE_LOOKUPS = Counter(
    "leadd_reconcile_lookups_total",
    "Provider lookups of sends left in doubt, by result (found, not_found, error).",
    ["result"],
    registry=REGISTRY,
)
LEASES_LOST = Counter(
    "leadd_touchpoint_leases_lost_total",
    "Touch point changes not made because the row was no longer ours (lease taken over, or"
    " cancelled by an opt-out), by stage (send, reconcile).",
    ["stage"],
    registry=REGISTRY,
)


class PoolCollector(Collector):
    """Reads the pool size at scrape time, so there is nothing to keep in sync."""

    def __init__(self) -> None:
        self.source: Callable[[], tuple[int, int]] | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        size, in_use = self.source() if self.source else (0, 0)
        yield GaugeMetricFamily("leadd_db_pool_connections", "Connections in the pool.", size)
        yield GaugeMetricFamily(
            "leadd_db_pool_connections_in_use", "Pool connections checked out.", in_use
        )


POOL = PoolCollector()
REGISTRY.register(POOL)

# Series that should read 0 before the first event rather than be missing.
for _channel in CHANNELS:
    for _outcome in SEND_OUTCOMES + DELIVERY_OUTCOMES:
        MESSAGES.labels(_channel, _outcome)
for _status in ("ok", "error", "skipped"):
    POLL_CYCLES.labels(_status)
for _reason in ("provider", "database", "data", "internal"):
    ENRICHMENT_FAILURES.labels(_reason)
for _source in ("webhook", "poll"):
    for _rejected in ("invalid", "unstorable"):
        ORDERS_REJECTED.labels(_source, _rejected)
for _provider in PROVIDERS:
    PROVIDER_AUTH_FAILED.labels(_provider).set(0)


# ---------------------------------------------------------------- one-line call sites


def start(
    *,
    touchpoints_interval: float,
    poll_interval: float | None,
    shopmonkey_auth_failed: Callable[[], bool],
) -> None:
    """At daemon start: the loop periods alerts compare against (no poll interval: polling
    is off), fresh provider state."""
    LOOP_INTERVAL.labels("touchpoints").set(touchpoints_interval)
    LOOP_INTERVAL.labels("enrichment").set(touchpoints_interval)  # its fallback period
    if poll_interval is not None:
        LOOP_INTERVAL.labels("poll").set(poll_interval)
    else:  # no polling: nothing for a staleness alert to watch
        with suppress(KeyError):  # older prometheus_client raise it for a missing child
            LOOP_INTERVAL.remove("poll")
    # The Shopmonkey client knows whether its last call was refused; read it at scrape time.
    PROVIDER_AUTH_FAILED.labels("shopmonkey").set_function(lambda: float(shopmonkey_auth_failed()))
    for provider in ("twilio", "sendgrid"):
        PROVIDER_AUTH_FAILED.labels(provider).set(0)


def count_send(channel: str, outcome: str) -> None:
    """One send call's result: a SendResult outcome (sent, retry, failed) or dry_run."""
    MESSAGES.labels(channel, _SEND_OUTCOME[outcome]).inc()


def count_unsent(channel: str, state: str) -> None:
    """A touch point that ended without a send call (skipped, failed); cancelled ones are
    not messages and count nothing."""
    outcome = _UNSENT_OUTCOME.get(state)
    if outcome is not None:
        MESSAGES.labels(channel, outcome).inc()


def observe_provider(provider: str, result: SendOutcome) -> None:
    """Latency of one send call, and whether the provider accepts our credentials."""
    if result.dry_run:
        return  # no call was made
    PROVIDER_LATENCY.labels(provider).observe(result.latency)
    if result.http_status in _AUTH_STATUSES.get(provider, ()) or result.error_code == "20003":
        PROVIDER_AUTH_FAILED.labels(provider).set(1)
    elif result.outcome == "sent" or (result.http_status or 500) < 500:
        # Any answer other than an auth refusal or a server error proves the key works.
        PROVIDER_AUTH_FAILED.labels(provider).set(0)


def count_sms_status(status: str, advanced: bool) -> None:
    """A Twilio status callback; `advanced`: the stored status moved forward (a repeated or
    out-of-order callback counts nothing)."""
    outcome = _TWILIO_FINAL.get(status)
    if outcome is not None and advanced:
        MESSAGES.labels("sms", outcome).inc()


def count_email_event(kind: str) -> None:
    """One new (deduplicated) SendGrid event."""
    outcome = _SENDGRID_FINAL.get(kind)
    if outcome is not None:
        MESSAGES.labels("email", outcome).inc()


def set_touchpoints_due(counts: Record | Mapping[str, int] | None) -> None:
    """The `count_due_touchpoints` row: n (due now), overdue and unconfirmed."""
    TOUCHPOINTS_DUE.set(counts["n"] if counts else 0)
    TOUCHPOINTS_OVERDUE.set(counts["overdue"] if counts else 0)
    TOUCHPOINTS_UNCONFIRMED.set(counts["unconfirmed"] if counts else 0)


for _result in ("found", "not_found", "error"):
    RECONCILE_LOOKUPS.labels(_result)
