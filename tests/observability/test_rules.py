"""The alert rules: promtool's own checks and unit tests, plus the conventions promtool can't see.

The tests that run promtool (Debian package `prometheus`, ``scripts/install-prometheus.sh``) are
marked ``integration``; a missing binary fails them, it never skips them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability import RULES_PATH, RULES_TEST_PATH, RUNBOOK_PATH, load_rules

ALERTS = {
    "InkitConnectorAbsent",
    "InkitConnectorLagGrowing",
    "InkitConnectorDeadLettering",
    "InkitConnectorDeadLetterProduceFailing",
    "InkitConnectorAuthBlocked",
    "InkitConnectorNoDeliveries",
    "InkitConnectorHighErrorRate",
    "InkitConnectorDown",
    "InkitConnectorNotReady",
    "InkitConnectorRecordStuck",
    "InkitConnectorBreakerOpen",
    "InkitConnectorLedgerWriteFailing",
}
SEVERITIES = {"warning", "critical"}
RUNBOOK_BASE = "https://github.com/inkit-connector/inkit-connector/blob/main/README.md#"
DURATION = re.compile(r"^(\d+[smhdwy])+$")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not on PATH: run scripts/install-prometheus.sh")
    return path


@pytest.fixture(scope="module")
def alerts() -> dict[str, dict[str, Any]]:
    rules = load_rules()
    return {r["alert"]: r for group in rules["groups"] for r in group["rules"] if "alert" in r}


def _run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.integration
def test_promtool_check_rules(promtool: str) -> None:
    result = _run(promtool, "check", "rules", RULES_PATH.name, cwd=RULES_PATH.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout + result.stderr


@pytest.mark.integration
def test_promtool_test_rules(promtool: str) -> None:
    result = _run(promtool, "test", "rules", RULES_TEST_PATH.name, cwd=RULES_TEST_PATH.parent)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_the_unit_tests_fail_when_an_alert_changes(promtool: str, tmp_path: Path) -> None:
    """Guard the guard: a threshold changed in the rules makes `promtool test rules` fail."""
    text = RULES_PATH.read_text()
    assert text.count(") > 0.2\n") == 1
    (tmp_path / RULES_PATH.name).write_text(text.replace(") > 0.2\n", ") > 0.5\n"))
    shutil.copy(RULES_TEST_PATH, tmp_path / RULES_TEST_PATH.name)
    result = _run(promtool, "test", "rules", RULES_TEST_PATH.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "InkitConnectorHighErrorRate" in result.stdout + result.stderr


def test_one_group_with_the_expected_alerts() -> None:
    rules = load_rules()
    assert [group["name"] for group in rules["groups"]] == ["inkit-connector"]
    names = [rule.get("alert") for rule in rules["groups"][0]["rules"]]
    assert len(names) == len(set(names)), names
    assert set(names) == ALERTS


def test_every_alert_is_documented_and_labelled(alerts: dict[str, dict[str, Any]]) -> None:
    for name, rule in alerts.items():
        assert DURATION.match(str(rule.get("for", ""))), f"{name}: `for:` missing or invalid"
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert set(annotations) >= {"summary", "description", "runbook_url"}, name
        assert annotations["summary"].strip(), name
        assert annotations["description"].strip(), name
        # GitHub's anchor for the README heading `### <AlertName>` is the lowercased name.
        assert annotations["runbook_url"] == RUNBOOK_BASE + name.lower(), name


def test_every_alert_has_a_firing_and_a_quiet_unit_test(alerts: dict[str, dict[str, Any]]) -> None:
    tests = yaml.safe_load(RULES_TEST_PATH.read_text())
    assert tests["rule_files"] == [RULES_PATH.name]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert set(alerts) - firing == set(), "alerts without a firing test"
    assert set(alerts) - quiet == set(), "alerts without a not-firing test"


def test_every_alert_has_a_runbook_section(alerts: dict[str, dict[str, Any]]) -> None:
    """The runbook (to be folded into the README) has a heading named after each alert."""
    headings = set(re.findall(r"^#{2,4} (\S+)\s*$", RUNBOOK_PATH.read_text(), re.MULTILINE))
    assert set(alerts) - headings == set(), f"alerts without a section in {RUNBOOK_PATH.name}"
