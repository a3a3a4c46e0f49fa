"""Alerts and dashboard: promtool accepts the rules, every alert has a firing test, and every
metric the rules and the dashboard read is one leadd exports (a renamed metric must not leave a
silent alert or an empty panel behind)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from leadd import metrics
from tests.conftest import ROOT
from tests.helpers import system_tool

PROMETHEUS = ROOT / "packaging" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERTS_TEST = PROMETHEUS / "alerts_test.yml"
DASHBOARD = ROOT / "packaging" / "grafana" / "leadd.json"

# Series Prometheus makes itself for every target: not leadd's to export.
SCRAPE_SERIES = frozenset({"up"})
# Grafana's variables, replaced by values that make the query plain PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$instance": ".*"}
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan"}
)
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
}


def promtool() -> str:
    return system_tool("promtool", "prometheus")


def exported() -> set[str]:
    """Every sample name leadd's registry can produce (families with no series yet included)."""
    names: set[str] = set()
    for family in metrics.REGISTRY.collect():
        names |= {family.name + s for s in _SUFFIXES.get(family.type, ("",))}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, keywords or labels)."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", expr):
        if expr[m.end() :].lstrip().startswith("(") or m.group(0).lower() in _KEYWORDS:
            continue  # a function call or a keyword
        names.add(m.group(0))
    return names


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, expr) for every query of every panel."""
    doc = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in doc["panels"]
        for target in panel.get("targets", [])
    ]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=PROMETHEUS)


# --------------------------------------------------------------------------- the checker itself


def test_metric_names_reads_names_not_functions_labels_or_keywords() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le, route) (rate(leadd_http_request_duration_seconds_bucket{route=~"/webhooks/.*", instance=~"$instance"}[$__rate_interval])))'
        ' > 60 and on (job) up{job="leadd"} == bool 1 unless ignoring (loop) leadd_loop_interval_seconds offset 5m'
    )
    assert metric_names(expr) == {
        "leadd_http_request_duration_seconds_bucket",
        "up",
        "leadd_loop_interval_seconds",
    }
    assert "leadd_lead_created_total" not in exported()  # a typo is caught
    assert {"leadd_leads_created_total", "leadd_speed_to_lead_seconds_bucket"} <= exported()


# --------------------------------------------------------------------------- alerts


def test_promtool_check_rules() -> None:
    result = run(promtool(), "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_test_rules() -> None:
    result = run(promtool(), "test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_case() -> None:
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    wanted = {
        "LeaddDown",
        "LeaddPollStale",
        "LeaddWebhook5xx",
        "LeaddSpeedToLeadSlow",
        "LeaddSmsFailureRate",
        "LeaddTouchpointsOverdue",
        "LeaddProviderAuthFailing",
    }
    assert {rule["alert"] for rule in alert_rules()} == wanted
    assert fired == wanted


def test_alerts_read_only_metrics_leadd_exports() -> None:
    known = exported() | SCRAPE_SERIES
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= known, (rule["alert"], names - known)


# --------------------------------------------------------------------------- dashboard


def test_dashboard_is_one_grafana_dashboard_with_unique_panels() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "leadd" and doc["title"] == "leadd"
    ids = [panel["id"] for panel in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in doc["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    variables = {v["name"] for v in doc["templating"]["list"]}
    assert variables == {"datasource", "instance"}


def test_every_panel_query_names_metrics_leadd_exports() -> None:
    known = exported()
    panels_with_leadd_metric = set()
    for title, expr in dashboard_targets():
        names = metric_names(expr)
        assert names, (title, expr)
        assert names <= known | SCRAPE_SERIES, (title, names - known - SCRAPE_SERIES)
        if names & known:
            panels_with_leadd_metric.add(title)
    titles = {title for title, _ in dashboard_targets()}
    # Only the scrape-status panel may read Prometheus' own `up` alone.
    assert titles - panels_with_leadd_metric == {"Up"}


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (Grafana variables filled in) as a recording rule."""
    rules = []
    for i, (_, expr) in enumerate(dashboard_targets()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"leadd:panel_{i}", "expr": expr})
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = run(promtool(), "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
