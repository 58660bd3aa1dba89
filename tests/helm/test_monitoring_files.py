"""The PrometheusRule and the dashboard ConfigMap carry the chart's files exactly, and the rules
pass `promtool check rules`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helm.conftest import CHART, ROOT, RenderFn

MONITORING = CHART / "ci" / "02-monitoring-values.yaml"
RULES = CHART / "files" / "prometheus-rules.yaml"
DASHBOARD = CHART / "dashboards" / "inkit-connector.json"


def promtool() -> str:
    found = shutil.which("promtool") or shutil.which("promtool", path=str(ROOT / ".tools" / "bin"))
    if not found:
        pytest.fail(
            "promtool is missing: run scripts/install-prometheus.sh "
            "(apt-get install -y --no-install-recommends prometheus)"
        )
    return found


def test_prometheus_rule_holds_the_rules_file(render: RenderFn, tmp_path: Path) -> None:
    out = render(None, MONITORING)
    rule = out.one("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    expected = yaml.safe_load(RULES.read_text())
    assert rule["spec"]["groups"] == expected["groups"]
    # What the cluster gets must itself pass promtool, not only the source file.
    rendered = tmp_path / "rendered-rules.yaml"
    rendered.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    proc = subprocess.run(
        [promtool(), "check", "rules", str(rendered)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboard_configmap_holds_the_dashboard_json(render: RenderFn) -> None:
    out = render(None, MONITORING)
    cm = out.one("ConfigMap", "-dashboard")
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Kafka"}
    (payload,) = cm["data"].values()
    assert payload == DASHBOARD.read_text()
    assert json.loads(payload) == json.loads(DASHBOARD.read_text())
