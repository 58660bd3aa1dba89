"""Checks of the Grafana dashboard and the Prometheus alert rules against the metric catalogue.

Shared readers for the test modules: where the files are, which PromQL they hold, which metric
names a query uses, and which series names the exporter
(``connector.observability.metrics.Metrics``) produces.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from connector.observability.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "inkit-connector"
DASHBOARD_PATH = CHART / "dashboards" / "inkit-connector.json"
RULES_PATH = CHART / "files" / "prometheus-rules.yaml"
RULES_TEST_PATH = CHART / "files" / "prometheus-rules.test.yaml"
RUNBOOK_PATH = REPO / "README.md"

# Names a query may use that are not the connector's own: Prometheus' scrape health series.
NON_EXPORTER_NAMES = frozenset({"up"})

# `label_values(<selector>, <label>)` in a Grafana query variable.
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")
# Grafana's built-in and our own template variables: `$x`, `${x}` and `${x:format}`.
_VARIABLE = re.compile(r"\$\{(?P<braced>\w+)(?::\w+)?\}|\$(?P<plain>\w+)")


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD_PATH.read_text())
    return dashboard


def load_rules() -> dict[str, Any]:
    rules: dict[str, Any] = yaml.safe_load(RULES_PATH.read_text())
    return rules


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, with the panels of collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) for every panel target, ``where`` naming the panel and the refId."""
    return [
        (f"panel {panel['title']!r} {target.get('refId')}", target["expr"])
        for panel in iter_panels(dashboard)
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def variable_selectors(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, selector) for every ``label_values(selector, label)`` query variable."""
    found = []
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = _LABEL_VALUES.match(text.strip())
        assert match, f"variable {variable['name']}: expected label_values(...), got {text!r}"
        found.append((f"variable {variable['name']!r}", match["selector"]))
    return found


def rule_exprs(rules: dict[str, Any]) -> list[tuple[str, str]]:
    """(alert or record name, expr) for every rule of every group."""
    return [
        (rule.get("alert") or rule["record"], rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def substitute(
    expr: str,
    *,
    rate_interval: str = "5m",
    namespace: str = ".*",
    pod: str = ".*",
) -> str:
    """Replace Grafana variables with values Prometheus accepts, the way Grafana would."""
    values = {
        "__rate_interval": rate_interval,
        "__interval": "1m",
        "__range": "1h",
        "__range_s": "3600",
        "__range_ms": "3600000",
        "namespace": namespace,
        "pod": pod,
        "datasource": "prometheus",
    }

    def replace(match: re.Match[str]) -> str:
        name = match["braced"] or match["plain"]
        if name not in values:
            raise KeyError(f"unknown dashboard variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def vector_selectors(expr: str) -> list[promql_parser.VectorSelector]:
    """Every vector selector of a (variable-free) PromQL expression; raises ValueError if bad."""
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a (variable-free) PromQL expression selects."""
    names = set()
    for selector in vector_selectors(expr):
        name = selector.name
        if not name:
            name = next((m.value for m in selector.matchers.matchers if m.name == "__name__"), None)
        assert name, f"selector without a metric name in {expr!r}"
        names.add(name)
    return names


def exporter_series_names() -> set[str]:
    """Every series name a fresh ``Metrics`` exposes, labelled metrics without children included.

    Read from the ``# TYPE`` lines of the exposition text, since a labelled metric that has no
    child yet has no sample line: counters give ``<name>_total`` (and ``_created``), histograms
    ``_bucket``, ``_sum``, ``_count`` (and ``_created``), gauges their own name.
    """
    text = generate_latest(_fresh_metrics().registry).decode()
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            if kind == "histogram":
                names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
            names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def _fresh_metrics() -> Metrics:
    return Metrics(CollectorRegistry())
