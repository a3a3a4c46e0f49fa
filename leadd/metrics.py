"""Every Prometheus metric leadd exports, declared once, on leadd's own registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable

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

disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series double the output for no use here
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

BUILD = Info("leadd_build", "leadd build information.", registry=REGISTRY)
BUILD.info({"version": __version__})

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
HTTP_DURATION = Histogram(
    "leadd_http_request_duration_seconds",
    "HTTP request handling time by route and status.",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
LEADS_INGESTED = Counter(
    "leadd_leads_ingested_total",
    "Order events ingested, by source and result (created, duplicate, updated, stale, ignored).",
    ["source", "result"],
    registry=REGISTRY,
)
WEBHOOKS_REJECTED = Counter(
    "leadd_webhooks_rejected_total",
    "Provider webhooks rejected, by provider and reason class.",
    ["provider", "reason"],
    registry=REGISTRY,
)
POLL_CYCLES = Counter(
    "leadd_poll_cycles_total", "Shopmonkey poll cycles by status.", ["status"], registry=REGISTRY
)
MESSAGES = Counter(
    "leadd_messages_total",
    "Outbound message attempts by channel and outcome (sent, retry, failed, dry_run, skipped,"
    " unknown: a send in doubt that could not be confirmed with the provider; not resent).",
    ["channel", "outcome"],
    registry=REGISTRY,
)
PROVIDER_LATENCY = Histogram(
    "leadd_provider_request_duration_seconds",
    "Provider API call latency.",
    ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
SPEED_TO_LEAD = Histogram(
    "leadd_speed_to_lead_seconds",
    "Lead creation to first accepted outbound message.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
    registry=REGISTRY,
)
TOUCHPOINTS_DUE = Gauge(
    "leadd_touchpoints_due", "Touch points due and not yet claimed.", registry=REGISTRY
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

for _channel in ("sms", "email"):
    for _outcome in ("sent", "retry", "failed", "dry_run", "skipped", "unknown"):
        MESSAGES.labels(_channel, _outcome)
for _status in ("ok", "error", "skipped"):
    POLL_CYCLES.labels(_status)
for _result in ("found", "not_found", "error"):
    RECONCILE_LOOKUPS.labels(_result)
