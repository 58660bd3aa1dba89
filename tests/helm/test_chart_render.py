"""The chart renders valid, safe manifests from every ci/ values file and refuses bad ones."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.cli import run
from connector.settings import KAFKA_PASSTHROUGH_PREFIX, SETTINGS
from tests.helm.conftest import (
    CHART,
    CI_VALUES,
    MINIMAL,
    ROOT,
    FailFn,
    Helm,
    Rendered,
    RenderFn,
    merge,
)

KUBERNETES_VALIDATE = ROOT / ".venv" / "bin" / "kubernetes-validate"
CRD_KINDS = {
    "ServiceMonitor",
    "PodMonitor",
    "PrometheusRule",
    "ScaledObject",
    "TriggerAuthentication",
}
CI_IDS = [p.name.removesuffix("-values.yaml") for p in CI_VALUES]
INLINE_DEV = CHART / "ci" / "06-inline-secret-dev-values.yaml"


def ci_file(prefix: str) -> Path:
    return next(p for p in CI_VALUES if p.name.startswith(prefix))


def test_ci_values_files_are_all_there() -> None:
    assert CI_IDS == [
        "01-default",
        "02-monitoring",
        "03-existing-secret",
        "04-keda",
        "05-network-policy",
        "06-inline-secret-dev",
        "07-operations",
    ]


def test_lint_strict(helm: Helm) -> None:
    proc = helm.run("lint", "--strict", CHART, "-f", ci_file("01"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- every ci/ values file: renders, passes kubernetes-validate --strict, holds the invariants ---


@pytest.mark.parametrize("values_file", CI_VALUES, ids=CI_IDS)
def test_ci_values_render_and_validate(render: RenderFn, values_file: Path, tmp_path: Path) -> None:
    out = render(None, values_file)
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(out.text)
    proc = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", "1.30.0", str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # CRDs only get a warning there: check their structure here instead.
    for doc in out.docs:
        if doc["kind"] in CRD_KINDS:
            assert_crd_structure(doc, out)


def assert_crd_structure(doc: dict[str, Any], out: Rendered) -> None:
    kind, spec = doc["kind"], doc["spec"]
    assert doc["metadata"]["name"]
    assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "inkit-connector"
    if kind in ("ServiceMonitor", "PodMonitor"):
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        key = "endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"
        assert set(spec) == {"namespaceSelector", "selector", key}
        (endpoint,) = spec[key]
        assert endpoint["port"] == "metrics"
        assert endpoint["path"] == "/metrics"
        assert spec["selector"]["matchLabels"] == out.deployment["spec"]["selector"]["matchLabels"]
    elif kind == "PrometheusRule":
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(spec) == {"groups"}
        for group in spec["groups"]:
            assert group["name"]
            for rule in group["rules"]:
                assert ("alert" in rule) != ("record" in rule)
                assert isinstance(rule["expr"], str | int | float)
                assert all(isinstance(v, str) for v in rule.get("labels", {}).values())
                assert all(isinstance(v, str) for v in rule.get("annotations", {}).values())
    elif kind == "ScaledObject":
        assert doc["apiVersion"] == "keda.sh/v1alpha1"
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": out.deployment["metadata"]["name"],
        }
        assert isinstance(spec["minReplicaCount"], int)
        assert isinstance(spec["maxReplicaCount"], int)
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        # KEDA reads trigger metadata as strings.
        assert all(isinstance(v, str) for v in trigger["metadata"].values())
        ref = trigger.get("authenticationRef")
        if ref:
            assert set(ref) == {"name"}
    elif kind == "TriggerAuthentication":
        assert doc["apiVersion"] == "keda.sh/v1alpha1"
        params = [ref["parameter"] for ref in spec["secretTargetRef"]]
        assert len(params) == len(set(params))
        # KEDA's kafka scaler: SASL credentials and TLS material (PEM) as auth parameters.
        assert set(params) <= {"username", "password", "ca", "cert", "key", "keyPassword"}
        assert ("username" in params) == ("password" in params)
        assert ("cert" in params) == ("key" in params)
        assert all(ref["name"] and ref["key"] for ref in spec["secretTargetRef"])


@pytest.mark.parametrize("values_file", CI_VALUES, ids=CI_IDS)
def test_env_names_exist_in_settings(render: RenderFn, values_file: Path) -> None:
    out = render(None, values_file)
    known = {s.name for s in SETTINGS}
    chart_env = set(out.config) | {e["name"] for e in out.container["env"]}
    unknown = {
        name
        for name in chart_env
        if name not in known and not name.startswith(KAFKA_PASSTHROUGH_PREFIX)
    }
    assert not unknown, f"the chart sets env vars the connector does not read: {sorted(unknown)}"


@pytest.mark.parametrize("values_file", CI_VALUES, ids=CI_IDS)
def test_grace_period_exceeds_drain_timeout(render: RenderFn, values_file: Path) -> None:
    out = render(None, values_file)
    grace = out.deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > float(out.config["DRAIN_TIMEOUT_SECONDS"])


@pytest.mark.parametrize("values_file", CI_VALUES, ids=CI_IDS)
def test_restricted_security_context(render: RenderFn, values_file: Path) -> None:
    out = render(None, values_file)
    pod = out.deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    ctx = out.container["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["runAsNonRoot"] is True
    tmp = next(m for m in out.container["volumeMounts"] if m["mountPath"] == "/tmp")
    volume = next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    assert "emptyDir" in volume
    for sa in out.all("ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False


@pytest.mark.parametrize("values_file", CI_VALUES, ids=CI_IDS)
def test_probes_hit_health_endpoints_on_the_metrics_port(
    render: RenderFn, values_file: Path
) -> None:
    out = render(None, values_file)
    (port,) = out.container["ports"]
    assert port["name"] == "metrics"
    assert port["containerPort"] == int(out.config["METRICS_PORT"])
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert out.container[probe]["httpGet"] == {"path": path, "port": "metrics"}
    (service_port,) = out.one("Service")["spec"]["ports"]
    assert service_port["name"] == "metrics"
    assert service_port["targetPort"] == "metrics"
    assert service_port["port"] == port["containerPort"]


# --- secrets ---


def test_inline_secrets_appear_only_inside_the_secret(render: RenderFn) -> None:
    dev = yaml.safe_load(INLINE_DEV.read_text())
    secrets = [
        dev["inkit"]["apiKey"],
        dev["kafka"]["sasl"]["password"],
        dev["schemaRegistry"]["basicAuth"]["userInfo"],
    ]
    out = render(None, INLINE_DEV)
    (secret,) = out.all("Secret")
    stored = {base64.b64decode(v).decode() for v in secret["data"].values()}
    assert set(secrets) <= stored
    for doc in out.docs:
        if doc["kind"] == "Secret":
            continue
        text = json.dumps(doc)
        for value in secrets:
            encoded = base64.b64encode(value.encode()).decode()
            assert value not in text, f"{value!r} leaks into {doc['kind']}"
            assert encoded not in text, f"{value!r} (base64) leaks into {doc['kind']}"
    env = {e["name"]: e for e in out.container["env"]}
    for name in (
        "INKIT_API_KEY",
        "KAFKA_CONFIG_SASL_PASSWORD",
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
    ):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
        assert "value" not in env[name]


def test_existing_secrets_are_referenced_and_no_secret_is_rendered(render: RenderFn) -> None:
    out = render(None, ci_file("03"))
    assert out.all("Secret") == []
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in out.container["env"]}
    assert env["INKIT_API_KEY"] == {"name": "inkit-credentials", "key": "token"}
    assert env["KAFKA_CONFIG_SASL_USERNAME"] == {"name": "kafka-credentials", "key": "user"}
    assert env["KAFKA_CONFIG_SASL_PASSWORD"] == {"name": "kafka-credentials", "key": "pass"}
    assert env["SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"] == {
        "name": "schema-registry-credentials",
        "key": "basic-auth",
    }
    # A secret librdkafka setting, from kafka.configFromSecrets: a secretKeyRef, not the ConfigMap.
    assert env["KAFKA_CONFIG_SSL_KEY_PASSWORD"] == {
        "name": "kafka-credentials",
        "key": "ssl-key-password",
    }
    assert "KAFKA_CONFIG_SSL_KEY_PASSWORD" not in out.config
    assert out.config["KAFKA_CONFIG_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert out.config["KAFKA_CONFIG_SASL_MECHANISM"] == "SCRAM-SHA-512"
    # Whole numbers stay whole (Helm reads them as floats): librdkafka refuses "1.048576e+06".
    assert out.config["KAFKA_CONFIG_QUEUED_MAX_MESSAGES_KBYTES"] == "1048576"
    assert out.config["KAFKA_CONFIG_SESSION_TIMEOUT_MS"] == "45000"
    assert json.loads(out.config["INKIT_DESTINATIONS"]) == {"inkit_storage": {}}


def test_default_existing_secret_key_is_api_key(render: RenderFn) -> None:
    out = render(MINIMAL)
    (env,) = [e for e in out.container["env"] if e["name"] == "INKIT_API_KEY"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "inkit-connector", "key": "api-key"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"inkit": {"existingSecret": ""}}, "an Inkit API key is required"),
        ({"inkit": {"apiKey": "k"}}, "set only one of inkit.existingSecret"),
        ({"image": {"repository": ""}}, "image.repository is required"),
        ({"kafka": {"bootstrapServers": ""}}, "kafka.bootstrapServers is required"),
        ({"kafka": {"topic": ""}}, "kafka.topic is required"),
        ({"schemaRegistry": {"url": ""}}, "needs schemaRegistry.url"),
        ({"kafka": {"dlqTopic": "segment-identify"}}, "kafka.dlqTopic must differ"),
        (
            {"kafka": {"sasl": {"mechanism": "PLAIN", "securityProtocol": "SASL_SSL"}}},
            "needs a password",
        ),
        (
            {"kafka": {"sasl": {"mechanism": "SCRAM-SHA-256", "existingSecret": "k"}}},
            "needs kafka.sasl.securityProtocol",
        ),
        ({"kafka": {"config": {"enable.auto.commit": "true"}}}, "kafka.config.enable.auto.commit"),
        ({"kafka": {"config": {"sasl.password": "x"}}}, "kafka.config.sasl.password"),
        (
            {"metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}},
            "enable only one of metrics.serviceMonitor and metrics.podMonitor",
        ),
        ({"networkPolicy": {"enabled": True}}, "networkPolicy.kafka.cidrs"),
        (
            {"autoscaling": {"enabled": True}, "keda": {"enabled": True, "partitionCount": 3}},
            "mutually exclusive",
        ),
        ({"autoscaling": {"enabled": True, "minReplicas": 4}}, "minReplicas must not exceed"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_combinations_fail_with_a_clear_message(
    render_fails: FailFn, override: dict[str, Any], message: str
) -> None:
    assert message in render_fails(merge(MINIMAL, override))


# --- shutdown ---


def _watchdog_margin_s() -> float:
    """The connector's SHUTDOWN_MARGIN_S, from its composition root."""
    return float(run.SHUTDOWN_MARGIN_S)


# The connector's watchdog exits after 2 × drain + SHUTDOWN_MARGIN_S; SIGKILL must come 10 s later.
@pytest.mark.parametrize(("grace", "drain"), [(45, 20), (54, 20), (20, 20), (75, 30.5)])
def test_grace_period_below_the_watchdog_plus_margin_fails(
    render_fails: FailFn, grace: int, drain: float
) -> None:
    assert grace < 2 * drain + _watchdog_margin_s() + 10
    error = render_fails(
        merge(MINIMAL, {"terminationGracePeriodSeconds": grace, "drainTimeoutSeconds": drain})
    )
    assert "terminationGracePeriodSeconds" in error
    assert "must be at least 2 × drainTimeoutSeconds + 15" in error


def test_default_grace_period_outlasts_the_shutdown_watchdog(render: RenderFn) -> None:
    """The issue's race: grace 45 = watchdog 2 × 20 + 5. The default now leaves 10 s or more."""
    pod = render(MINIMAL).deployment["spec"]["template"]["spec"]
    drain = float(render(MINIMAL).config["DRAIN_TIMEOUT_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] >= 2 * drain + _watchdog_margin_s() + 10


def test_grace_period_and_drain_are_wired(render: RenderFn) -> None:
    out = render(merge(MINIMAL, {"terminationGracePeriodSeconds": 135, "drainTimeoutSeconds": 60}))
    assert out.deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 135
    assert out.config["DRAIN_TIMEOUT_SECONDS"] == "60"


# --- scaling ---


def test_keda_replicas_bounded_by_partitions(render: RenderFn) -> None:
    values = yaml.safe_load(ci_file("04").read_text())
    out = render(None, ci_file("04"))
    spec = out.one("ScaledObject")["spec"]
    assert spec["maxReplicaCount"] <= values["keda"]["partitionCount"]
    meta = spec["triggers"][0]["metadata"]
    assert meta["allowIdleConsumers"] == "false"
    assert meta["excludePersistentLag"] == "true"
    assert meta["consumerGroup"] == "inkit-connector"
    assert meta["topic"] == values["kafka"]["topic"]
    assert meta["bootstrapServers"] == values["kafka"]["bootstrapServers"]
    assert meta["sasl"] == "plaintext"
    assert meta["tls"] == "enable"
    auth = out.one("TriggerAuthentication")
    assert spec["triggers"][0]["authenticationRef"]["name"] == auth["metadata"]["name"]
    # KEDA owns the replica count; the HPA it creates would fight a fixed one.
    assert "replicas" not in out.deployment["spec"]
    assert out.all("HorizontalPodAutoscaler") == []


def test_keda_max_replicas_defaults_to_partition_count(render: RenderFn) -> None:
    out = render(merge(MINIMAL, {"keda": {"enabled": True, "partitionCount": 8}}))
    assert out.one("ScaledObject")["spec"]["maxReplicaCount"] == 8


def test_keda_max_replicas_above_partitions_fails(render_fails: FailFn) -> None:
    keda = {"enabled": True, "partitionCount": 12, "maxReplicaCount": 13}
    error = render_fails(merge(MINIMAL, {"keda": keda}))
    assert "keda.maxReplicaCount (13) must not exceed keda.partitionCount (12)" in error


def test_keda_without_partition_count_is_rejected(render_fails: FailFn) -> None:
    error = render_fails(merge(MINIMAL, {"keda": {"enabled": True}}))
    assert "partitionCount" in error


def test_keda_needs_its_api(render_fails: FailFn) -> None:
    error = render_fails(
        merge(MINIMAL, {"keda": {"enabled": True, "partitionCount": 3}}), crds=False
    )
    assert "keda.sh/v1alpha1" in error


def test_hpa(render: RenderFn, tmp_path: Path) -> None:
    out = render(merge(MINIMAL, {"autoscaling": {"enabled": True, "maxReplicas": 6}}))
    hpa = out.one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == out.deployment["metadata"]["name"]
    assert hpa["spec"]["maxReplicas"] == 6
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in out.deployment["spec"]


# --- labels, selectors, rollouts ---


def selectors(out: Rendered) -> dict[str, Any]:
    return {
        "Deployment": out.deployment["spec"]["selector"],
        "Service": out.one("Service")["spec"]["selector"],
        "PodDisruptionBudget": out.one("PodDisruptionBudget")["spec"]["selector"],
        "NetworkPolicy": out.one("NetworkPolicy")["spec"]["podSelector"],
        "ServiceMonitor": out.one("ServiceMonitor")["spec"]["selector"],
    }


def test_selectors_are_stable_across_upgrades(render: RenderFn, chart_copy: Path) -> None:
    extra = {
        "networkPolicy": {
            "enabled": True,
            "kafka": {"cidrs": ["10.0.0.0/8"]},
            "schemaRegistry": {"cidrs": ["10.0.0.0/8"]},
        },
        "metrics": {"serviceMonitor": {"enabled": True}},
    }
    before = render(merge(MINIMAL, extra))
    chart_yaml = chart_copy / "Chart.yaml"
    meta = yaml.safe_load(chart_yaml.read_text())
    meta.update(version="7.3.1", appVersion="9.9.9")
    chart_yaml.write_text(yaml.safe_dump(meta))
    after = render(merge(MINIMAL, merge(extra, {"image": {"tag": "9.9.9-rc1"}})), chart=chart_copy)
    assert after.deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "9.9.9-rc1"
    assert after.deployment["metadata"]["labels"]["helm.sh/chart"] == "inkit-connector-7.3.1"
    assert selectors(before) == selectors(after)
    for selector in selectors(before).values():
        text = json.dumps(selector)
        assert "version" not in text
        assert "helm.sh/chart" not in text
    # The pods carry the selector labels (or nothing would match).
    pod_labels = after.deployment["spec"]["template"]["metadata"]["labels"]
    assert after.deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def checksums(out: Rendered) -> dict[str, str]:
    annotations = out.deployment["spec"]["template"]["metadata"]["annotations"]
    return {k: v for k, v in annotations.items() if k.startswith("checksum/")}


def test_checksum_config_changes_with_config(render: RenderFn) -> None:
    base = checksums(render(MINIMAL))
    changed = checksums(render(merge(MINIMAL, {"inkit": {"maxInFlight": 16}})))
    assert set(base) == {"checksum/config", "checksum/secret"}
    assert changed["checksum/config"] != base["checksum/config"]
    assert changed["checksum/secret"] == base["checksum/secret"]
    assert checksums(render(MINIMAL)) == base  # deterministic


def test_checksum_secret_changes_with_credentials(render: RenderFn) -> None:
    base = checksums(render(MINIMAL))
    other_secret = checksums(render(merge(MINIMAL, {"inkit": {"existingSecret": "rotated"}})))
    assert other_secret["checksum/secret"] != base["checksum/secret"]
    inline = {"inkit": {"existingSecret": "", "apiKey": "one"}}
    key_one = checksums(render(merge(MINIMAL, inline)))
    key_two = checksums(render(merge(MINIMAL, merge(inline, {"inkit": {"apiKey": "two"}}))))
    assert key_one["checksum/secret"] != key_two["checksum/secret"]
    assert key_one["checksum/config"] == key_two["checksum/config"]


# --- defaults ---


def test_defaults_with_only_an_image_and_a_key_are_applyable(
    render: RenderFn, tmp_path: Path
) -> None:
    out = render(MINIMAL)
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(out.text)
    proc = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", "1.30.0", str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.config["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert out.config["KAFKA_TOPIC"] == "segment-identify"


def test_minimal_install_defaults(render: RenderFn) -> None:
    out = render(MINIMAL)
    kinds = sorted(d["kind"] for d in out.docs)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Pod",  # the `helm test` hook
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    spec = out.deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 60
    assert pod["enableServiceLinks"] is False
    assert out.container["image"] == "registry.example.com/inkit-connector:0.1.0"
    assert out.container["args"] == ["run"]
    assert out.container["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert "memory" in out.container["resources"]["limits"]
    assert out.config["LOG_FORMAT"] == "json"
    assert out.config["DRAIN_TIMEOUT_SECONDS"] == "20"
    assert out.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert out.one("Service")["spec"]["publishNotReadyAddresses"] is True


def test_image_digest_wins_over_tag(render: RenderFn) -> None:
    digest = "sha256:" + "a" * 64
    out = render(merge(MINIMAL, {"image": {"tag": "1.2.3", "digest": digest}}))
    assert out.container["image"] == f"registry.example.com/inkit-connector@{digest}"


def test_monitoring_objects_need_their_api(render_fails: FailFn) -> None:
    for block in ("serviceMonitor", "podMonitor", "prometheusRule"):
        values = merge(MINIMAL, {"metrics": {block: {"enabled": True}}})
        assert "monitoring.coreos.com/v1" in render_fails(values, crds=False)


def test_network_policy_rules(render: RenderFn) -> None:
    out = render(None, ci_file("05"))
    policy = out.one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert ingress["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    ports = [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in policy["egress"]]
    assert [(9092, "TCP")] in ports  # Kafka
    assert [(443, "TCP")] in ports  # Inkit
    assert [(8081, "TCP")] in ports  # Schema Registry
    assert [(53, "TCP"), (53, "UDP")] in ports  # DNS
    dns = policy["egress"][ports.index([(53, "TCP"), (53, "UDP")])]["to"][0]
    assert dns["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
    assert len(policy["egress"]) == 4


@pytest.mark.parametrize("kube", ["1.25.0", "1.30.0"])
def test_oldest_supported_kubernetes(render: RenderFn, kube: str, tmp_path: Path) -> None:
    values = merge(
        MINIMAL,
        {
            "networkPolicy": {
                "enabled": True,
                "kafka": {"cidrs": ["10.0.0.0/8"]},
                "schemaRegistry": {"cidrs": ["10.0.0.0/8"]},
                "metricsIngress": {"namespaceSelectors": []},
            },
            "tests": {"enabled": False},
        },
    )
    out = render(values, extra=("--kube-version", kube))
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(out.text)
    proc = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", kube, str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # unhealthyPodEvictionPolicy exists from 1.27 on; older API servers would refuse it.
    pdb = out.one("PodDisruptionBudget")["spec"]
    assert ("unhealthyPodEvictionPolicy" in pdb) == (kube != "1.25.0")
    assert out.one("NetworkPolicy")["spec"]["ingress"] == []


def test_notes_render(render: RenderFn, chart_copy: Path) -> None:
    # helm template does not render NOTES.txt (and .Files cannot read templates/): a scratch
    # template runs a copy of it through `tpl`.
    shutil.copy(chart_copy / "templates" / "NOTES.txt", chart_copy / "notes-under-test.txt")
    (chart_copy / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  notes: {{ tpl (.Files.Get "notes-under-test.txt") . | toJson }}\n'
    )
    values = merge(
        MINIMAL,
        {"inkit": {"existingSecret": "", "apiKey": "k"}},
    )
    notes = render(values, chart=chart_copy).one("ConfigMap", "notes")["data"]["notes"]
    assert "segment-identify.dlq" in notes
    assert "WARNING: inkit.apiKey is set inline" in notes
    assert "helm test inkit-connector -n connectors" in notes
