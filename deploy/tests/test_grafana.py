"""deploy/grafana/platform.json: a dashboard Grafana loads, whose every query
reads metrics the code defines (a renamed metric breaks this test, not a
panel nobody looks at until the night it is needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client.metrics import MetricWrapperBase

import gateway.metrics
import kit.metrics

DASHBOARD = Path(__file__).resolve().parents[1] / "grafana" / "platform.json"

SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
PROMQL_WORDS |= {"and", "or", "unless", "offset", "inf", "nan"}


def defined_series() -> set[str]:
    """Every series name that kit.metrics and gateway.metrics can export."""
    names = set(kit.metrics.callback_gauge_names())
    for module in (kit.metrics, gateway.metrics):
        for metric in vars(module).values():
            if isinstance(metric, MetricWrapperBase):
                for family in metric.describe():
                    names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # groupings
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        following = expr[match.end() :].lstrip()
        if following.startswith("(") or match.group() in PROMQL_WORDS:
            continue  # a function or a keyword
        names.add(match.group())
    return names


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return [panel for panel in found if panel["type"] != "row"]


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_the_expression_parser_finds_metric_names_only():
    expr = (
        "histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket"
        '{job=~"$job", status=~"5.."}[$__rate_interval]))) / sum(up)'
    )
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "up"}


def test_the_dashboard_has_a_recent_schema_and_a_prometheus_datasource_variable(dashboard):
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]


def test_every_panel_reads_metrics_that_the_code_defines(dashboard):
    defined = defined_series()
    unknown = {
        (panel["title"], name)
        for panel in panels(dashboard)
        for target in panel["targets"]
        for name in metric_names(target["expr"])
        if name not in defined
    }
    assert unknown == set()


@pytest.mark.parametrize(
    "metric",
    [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "rpc_duration_seconds_bucket",
        "worker_pool_in_use",
        "outbox_lag_seconds",
        "partner_delivery_lag_seconds_bucket",
        "partner_deliveries_total",
        "emails_total",
        "upload_refusals_total",
    ],
)
def test_the_dashboard_shows_each_thing_operators_asked_for(dashboard, metric):
    read = {
        name
        for panel in panels(dashboard)
        for target in panel["targets"]
        for name in metric_names(target["expr"])
    }
    assert metric in read
