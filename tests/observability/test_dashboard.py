"""Offline checks of the Grafana dashboard, and of the names every PromQL query uses.

No Grafana server is installable here: these tests check the JSON model's structure, parse every
query (dashboard panels, dashboard variables, alert rules) with ``promql-parser``, and hold every
metric name to the exporter's catalogue, so that a renamed metric fails CI instead of silently
emptying a panel or an alert. ``test_prometheus_live.py`` then evaluates the same queries in a
real Prometheus.
"""

from __future__ import annotations

import re
from typing import Any

import promql_parser
import pytest

from tests.observability import (
    NON_EXPORTER_NAMES,
    dashboard_queries,
    exporter_series_names,
    iter_panels,
    load_dashboard,
    load_rules,
    metric_names,
    rule_exprs,
    substitute,
    variable_selectors,
    vector_selectors,
)

GRID_COLUMNS = 24
PANEL_TYPES = {"row", "timeseries", "stat"}
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


@pytest.fixture(scope="module")
def rules() -> dict[str, Any]:
    return load_rules()


def _all_queries(dashboard: dict[str, Any], rules: dict[str, Any]) -> list[tuple[str, str]]:
    return (
        dashboard_queries(dashboard)
        + variable_selectors(dashboard)
        + [(f"alert {name}", expr) for name, expr in rule_exprs(rules)]
    )


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in iter_panels(dashboard) if p["type"] != "row"]


def test_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "inkit-connector"
    assert dashboard["title"] == "Inkit connector"
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["schemaVersion"] >= 39
    # Provisioned from a ConfigMap: no `id` (Grafana assigns it), no `__inputs` to fill in.
    assert dashboard.get("id") is None
    assert "__inputs" not in dashboard


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert list(variables) == ["datasource", "namespace", "pod"]

    datasource = variables["datasource"]
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"

    for name in ("namespace", "pod"):
        variable = variables[name]
        assert variable["type"] == "query", name
        assert variable["datasource"] == DATASOURCE_REF, name
        assert variable["multi"] is True, name
        assert variable["includeAll"] is True, name
        # "All" must be a regex that also matches series Grafana has not listed yet.
        assert variable["allValue"] == ".*", name
        assert variable["definition"] == variable["query"]["query"], name
    assert variables["namespace"]["definition"] == (
        "label_values(inkit_connector_build_info, namespace)"
    )
    # The pod list follows the namespace selection.
    assert variables["pod"]["definition"] == (
        'label_values(inkit_connector_build_info{namespace=~"$namespace"}, pod)'
    )


def test_panel_ids_are_unique_integers(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in iter_panels(dashboard)]
    assert all(type(i) is int for i in ids), ids
    assert len(ids) == len(set(ids)), sorted(ids)


def test_grid_positions(dashboard: dict[str, Any]) -> None:
    for panel in iter_panels(dashboard):
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"}, panel["title"]
        assert all(type(v) is int and v >= 0 for v in grid.values()), panel["title"]
        assert grid["w"] > 0, panel["title"]
        assert grid["h"] > 0, panel["title"]
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in iter_panels(dashboard):
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = panel["title"]


def test_panel_types_titles_and_units(dashboard: dict[str, Any]) -> None:
    titles = [panel["title"] for panel in iter_panels(dashboard)]
    assert len(titles) == len(set(titles)), titles
    for panel in iter_panels(dashboard):
        assert panel["type"] in PANEL_TYPES, panel["title"]
    for panel in _panels(dashboard):
        unit = panel["fieldConfig"]["defaults"].get("unit")
        assert isinstance(unit, str), f"{panel['title']!r} has no unit"
        assert unit, f"{panel['title']!r} has no unit"
        assert panel.get("description"), f"{panel['title']!r} has no description"


def test_targets(dashboard: dict[str, Any]) -> None:
    for panel in _panels(dashboard):
        targets = panel.get("targets", [])
        assert targets, f"{panel['title']!r} has no query"
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        ref_ids = [target.get("refId") for target in targets]
        assert all(ref_ids), f"{panel['title']!r}: a target without refId"
        assert len(ref_ids) == len(set(ref_ids)), f"{panel['title']!r}: duplicate refId"
        for target in targets:
            assert target.get("expr"), f"{panel['title']!r} {target['refId']}: no expr"
            assert target["datasource"] == DATASOURCE_REF, panel["title"]


def test_every_selector_filters_namespace_and_pod(dashboard: dict[str, Any]) -> None:
    for where, expr in dashboard_queries(dashboard):
        plain = substitute(expr, namespace="NAMESPACE_VAR", pod="POD_VAR")
        for selector in vector_selectors(plain):
            matchers = [(m.name, m.op, m.value) for m in selector.matchers.matchers]
            assert ("namespace", promql_parser.MatchOp.Re, "NAMESPACE_VAR") in matchers, where
            assert ("pod", promql_parser.MatchOp.Re, "POD_VAR") in matchers, where


def test_ranges_use_rate_interval(dashboard: dict[str, Any]) -> None:
    for where, expr in dashboard_queries(dashboard):
        for window in re.findall(r"\[([^\]]*)\]", expr):
            assert window == "$__rate_interval", f"{where}: range [{window}]"


@pytest.mark.parametrize("source", ["dashboard panels", "dashboard variables", "alert rules"])
def test_every_expression_parses(
    source: str, dashboard: dict[str, Any], rules: dict[str, Any]
) -> None:
    queries = {
        "dashboard panels": dashboard_queries(dashboard),
        "dashboard variables": variable_selectors(dashboard),
        "alert rules": rule_exprs(rules),
    }[source]
    assert queries
    errors = []
    for where, expr in queries:
        try:
            promql_parser.parse(substitute(expr))
        except ValueError as exc:
            errors.append(f"{where}: {exc}\n    {expr}")
    assert not errors, "\n".join(errors)


def test_every_metric_name_exists_in_the_exporter(
    dashboard: dict[str, Any], rules: dict[str, Any]
) -> None:
    exported = exporter_series_names()
    unknown = []
    for where, expr in _all_queries(dashboard, rules):
        for name in sorted(metric_names(substitute(expr)) - exported - NON_EXPORTER_NAMES):
            unknown.append(f"{where}: {name}")
    assert not unknown, "metrics not in connector.observability.metrics.Metrics:\n" + "\n".join(
        unknown
    )


def test_the_dashboard_shows_every_metric(dashboard: dict[str, Any]) -> None:
    """A metric added to the catalogue gets a panel (or this test names it)."""
    used = set().union(*(metric_names(substitute(e)) for _, e in dashboard_queries(dashboard)))
    used_families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    exported = {
        name
        for name in exporter_series_names()
        if not name.endswith(("_created", "_bucket", "_sum", "_count"))
    }
    assert not exported - used_families, f"metrics with no panel: {exported - used_families}"


def test_the_name_check_catches_a_renamed_metric() -> None:
    """Guard the guard: a misspelt name is reported, Prometheus' own `up` is allowed."""
    exported = exporter_series_names()
    assert "inkit_connector_records_total" in exported
    assert "inkit_connector_http_request_duration_seconds_bucket" in exported
    # A labelled metric without children has no sample line, yet counts as exported.
    assert "inkit_connector_consumer_lag_records" in exported
    expr = 'sum(rate(inkit_connector_record_total[5m])) and on() up{job="x"} == 1'
    assert metric_names(expr) - exported - NON_EXPORTER_NAMES == {"inkit_connector_record_total"}
