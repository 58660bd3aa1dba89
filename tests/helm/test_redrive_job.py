"""The optional redrive Job: off by default; when on, the Deployment's image, Secrets and
configuration with `redrive` and the given flags, a name per release revision, exit 3 failing
the Job without retries, and labels no Service, PodDisruptionBudget or monitor selects."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.helm.conftest import CI_VALUES, MINIMAL, ROOT, RenderFn, merge

KUBERNETES_VALIDATE = ROOT / ".venv" / "bin" / "kubernetes-validate"
ON: dict[str, Any] = {"redrive": {"enabled": True, "args": ["--reason", "http_422"]}}


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def test_no_job_unless_enabled(render: RenderFn) -> None:
    assert render(MINIMAL).all("Job") == []


def test_the_job_runs_redrive_with_the_deployments_configuration(
    render: RenderFn, tmp_path: Path
) -> None:
    # The operations values carry SASL, secret librdkafka settings, extraEnv and volumes.
    operations = next(p for p in CI_VALUES if p.name.startswith("07"))
    out = render(ON, operations)
    job = out.one("Job", "-redrive-1")
    (container,) = _pod(job)["containers"]
    assert container["args"] == ["redrive", "--reason", "http_422"]
    assert container["image"] == out.container["image"]
    assert container["env"] == out.container["env"]
    assert container["envFrom"] == out.container["envFrom"]
    assert container["securityContext"] == out.container["securityContext"]
    assert container["volumeMounts"] == out.container["volumeMounts"]
    pod = _pod(job)
    deployment_pod = out.deployment["spec"]["template"]["spec"]
    assert pod["volumes"] == deployment_pod["volumes"]
    assert pod["serviceAccountName"] == deployment_pod["serviceAccountName"]
    assert pod["restartPolicy"] == "Never"
    manifest = tmp_path / "job.yaml"
    manifest.write_text(out.text)
    proc = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", "1.30.0", str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_failed_again_fails_the_job_at_once_and_other_exits_retry(render: RenderFn) -> None:
    job = render(merge(MINIMAL, ON)).one("Job")
    assert job["spec"]["backoffLimit"] == 3
    (rule,) = job["spec"]["podFailurePolicy"]["rules"]
    assert rule == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "redrive", "operator": "In", "values": [3]},
    }


def test_no_service_pdb_or_monitor_selects_the_job(render: RenderFn) -> None:
    values = merge(MINIMAL, merge(ON, {"metrics": {"serviceMonitor": {"enabled": True}}}))
    out = render(values)
    labels = out.one("Job")["spec"]["template"]["metadata"]["labels"]
    selectors = [
        out.one("Service")["spec"]["selector"],
        out.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        out.deployment["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert not all(labels.get(k) == v for k, v in selector.items()), selector
    assert labels["app.kubernetes.io/component"] == "redrive"


def test_its_resources_can_differ_from_the_deployments(render: RenderFn) -> None:
    values = merge(MINIMAL, merge(ON, {"redrive": {"resources": {"limits": {"memory": "1Gi"}}}}))
    job = render(values).one("Job")
    # `helm template` always renders revision 1; `helm upgrade` counts it up (a new Job each).
    assert job["metadata"]["name"] == "inkit-connector-redrive-1"
    assert _pod(job)["containers"][0]["resources"] == {"limits": {"memory": "1Gi"}}
