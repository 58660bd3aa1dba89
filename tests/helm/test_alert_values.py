"""The alert rules are driven by values (metrics.prometheusRule): per alert enabled, `for`,
severity, labels and thresholds; the release's job and namespace in every selector; the
availability alert left out when the chart runs zero replicas on purpose. What values change,
promtool then sees: a raised floor makes the stalled-partition unit test fail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.helm.conftest import CHART, MINIMAL, FailFn, RenderFn, merge
from tests.helm.test_monitoring_files import promtool

RULES_TEST = CHART / "files" / "prometheus-rules.test.yaml"


def rules(render: RenderFn, prometheus_rule: dict[str, Any], **more: Any) -> dict[str, Any]:
    values = merge(
        MINIMAL,
        {
            "metrics": {
                "serviceMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True, **prometheus_rule},
            }
        },
    )
    out = render(merge(values, more))
    (group,) = out.one("PrometheusRule")["spec"]["groups"]
    return {rule["alert"]: rule for rule in group["rules"]}


def test_each_alert_can_be_turned_off(render: RenderFn) -> None:
    defaults = rules(render, {})
    assert len(defaults) == 12  # RecordStuck (#13), BreakerOpen (#24), LedgerWriteFailing (#15)
    fewer = rules(render, {"alerts": {"notReady": {"enabled": False}, "down": {"enabled": False}}})
    assert set(defaults) - set(fewer) == {"InkitConnectorNotReady", "InkitConnectorDown"}


def test_for_severity_labels_and_thresholds_come_from_values(render: RenderFn) -> None:
    got = rules(
        render,
        {
            "alertLabels": {"team": "data", "severity": "ignored"},
            "alerts": {
                "lagGrowing": {"for": "30m", "severity": "critical", "minLag": 50000},
                "noDeliveries": {"minLag": 250, "window": "30m", "labels": {"page": "yes"}},
                "highErrorRate": {"ratio": 0.5, "minRequestRate": 2},
            },
        },
    )
    lag = got["InkitConnectorLagGrowing"]
    assert lag["for"] == "30m"
    assert lag["labels"] == {"severity": "critical", "team": "data"}
    assert ") > 50000\n" in lag["expr"]
    stalled = got["InkitConnectorNoDeliveries"]
    assert stalled["labels"] == {"severity": "critical", "team": "data", "page": "yes"}
    assert ") > 250\n" in stalled["expr"]
    assert "offset 30m)" in stalled["expr"]
    assert "(floor 250)" in stalled["annotations"]["description"]
    errors = got["InkitConnectorHighErrorRate"]
    assert ") > 0.5\n" in errors["expr"]
    assert "> 2\n" in errors["expr"]
    assert "(threshold 50 %)" in errors["annotations"]["description"]


def test_every_selector_names_the_release_job_and_namespace(render: RenderFn) -> None:
    for name, rule in rules(render, {}).items():
        selectors = rule["expr"].count("{")
        scoped = rule["expr"].count('{job="inkit-connector", namespace="connectors"')
        assert selectors == scoped > 0, name


def test_job_follows_the_monitor_and_fullname_override(render: RenderFn) -> None:
    pod_monitor = rules(
        render, {}, metrics={"serviceMonitor": {"enabled": False}, "podMonitor": {"enabled": True}}
    )
    assert (
        'up{job="connectors/inkit-connector", namespace="connectors"}'
        in (pod_monitor["InkitConnectorAbsent"]["expr"])
    )
    override = rules(render, {}, fullnameOverride="billing")
    assert 'up{job="billing", namespace="connectors"}' in override["InkitConnectorDown"]["expr"]
    explicit = rules(
        render, {"job": "kubernetes-pods"}, metrics={"serviceMonitor": {"enabled": False}}
    )
    assert 'job="kubernetes-pods"' in explicit["InkitConnectorAbsent"]["expr"]


def test_rules_without_a_known_job_fail_to_render(render_fails: FailFn) -> None:
    """No chart monitor and no `job`: the alerts could only guess the job, and a wrong guess would
    page InkitConnectorAbsent for ever."""
    values = merge(MINIMAL, {"metrics": {"prometheusRule": {"enabled": True}}})
    assert "metrics.prometheusRule.job" in render_fails(values)


def test_absent_is_left_out_when_the_chart_runs_zero_replicas(render: RenderFn) -> None:
    assert "InkitConnectorAbsent" not in rules(render, {}, replicaCount=0)
    keda = {"enabled": True, "partitionCount": 3, "minReplicaCount": 0}
    assert "InkitConnectorAbsent" not in rules(render, {}, keda=keda)
    assert "InkitConnectorAbsent" in rules(render, {}, keda={**keda, "minReplicaCount": 1})


def test_runbook_links_follow_the_base_url(render: RenderFn) -> None:
    got = rules(render, {"runbookBaseUrl": "https://wiki.example.com/runbooks/inkit/"})
    for name, rule in got.items():
        assert rule["annotations"]["runbook_url"] == (
            f"https://wiki.example.com/runbooks/inkit#{name.lower()}"
        )


def test_a_raised_floor_silences_the_stalled_partition_case(
    render: RenderFn, tmp_path: Path
) -> None:
    """Values reach promtool: with noDeliveries.minLag 100 the unit test's stalled partition (50
    records waiting) no longer fires, so the default file's unit tests fail on that case only."""
    got = rules(render, {"alerts": {"noDeliveries": {"minLag": 100}}})
    groups = [{"name": "inkit-connector", "rules": list(got.values())}]
    (tmp_path / "prometheus-rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    proc = subprocess.run(
        [promtool(), "test", "rules", RULES_TEST.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "a stalled partition fires although its pod is alive" in output
    failed = [line for line in output.splitlines() if "FAILED" in line or "alertname:" in line]
    assert all("NoDeliveries" in line for line in failed if "alertname:" in line), output
