"""Chart defaults that hold (issue #23): each default the on-call review found wanting, rendered
and checked, plus the options added next to them (helm test, reloader, KEDA TLS, DNS)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.helm.conftest import MINIMAL, FailFn, RenderFn, merge

MONITORING_ON = {
    "metrics": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "dashboard": {"enabled": True},
    }
}
KEDA = {"keda": {"enabled": True, "partitionCount": 6}}


def pod_spec(out: Any) -> dict[str, Any]:
    spec: dict[str, Any] = out.deployment["spec"]["template"]["spec"]
    return spec


# --- update strategy ---


def test_recreate_renders_without_rolling_update(render: RenderFn) -> None:
    # Helm merges `type: Recreate` with the default rollingUpdate block; the API server refuses
    # a Recreate strategy that carries one.
    out = render(merge(MINIMAL, {"updateStrategy": {"type": "Recreate"}}))
    assert out.deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_default_strategy_stops_before_it_starts(render: RenderFn) -> None:
    strategy = render(MINIMAL).deployment["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
    }


# --- secret-looking librdkafka settings ---


@pytest.mark.parametrize(
    "key",
    [
        "ssl.key.password",
        "ssl.keystore.password",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
        "sasl.jaas.config",
        "ssl.key.pem",
    ],
)
def test_secret_looking_kafka_config_is_refused(render_fails: FailFn, key: str) -> None:
    error = render_fails(merge(MINIMAL, {"kafka": {"config": {key: "s3cret"}}}))
    assert f"kafka.config.{key} looks secret" in error
    assert "kafka.configFromSecrets" in error
    assert "s3cret" not in error


@pytest.mark.parametrize("key", ["ssl.ca.location", "ssl.key.location", "sasl.oauthbearer.method"])
def test_non_secret_kafka_config_passes(render: RenderFn, key: str) -> None:
    out = render(merge(MINIMAL, {"kafka": {"config": {key: "x"}}}))
    assert out.config["KAFKA_CONFIG_" + key.upper().replace(".", "_")] == "x"


def test_config_from_secrets_becomes_a_secret_key_ref(render: RenderFn) -> None:
    ref = {"name": "kafka-tls", "key": "password"}
    out = render(merge(MINIMAL, {"kafka": {"configFromSecrets": {"ssl.key.password": ref}}}))
    env = {e["name"]: e for e in out.container["env"]}
    assert env["KAFKA_CONFIG_SSL_KEY_PASSWORD"]["valueFrom"]["secretKeyRef"] == ref
    assert "KAFKA_CONFIG_SSL_KEY_PASSWORD" not in out.config
    # The reference is part of checksum/secret: pointing at another Secret rolls the pods.
    other = render(
        merge(MINIMAL, {"kafka": {"configFromSecrets": {"ssl.key.password": {**ref, "key": "b"}}}})
    )
    key = "checksum/secret"
    annotations = [
        o.deployment["spec"]["template"]["metadata"]["annotations"] for o in (out, other)
    ]
    assert annotations[0][key] != annotations[1][key]


@pytest.mark.parametrize(
    ("kafka", "message"),
    [
        (
            {"configFromSecrets": {"enable.auto.commit": {"name": "s", "key": "k"}}},
            "kafka.configFromSecrets.enable.auto.commit cannot be set",
        ),
        (
            {
                "config": {"client.id": "a"},
                "configFromSecrets": {"client.id": {"name": "s", "key": "k"}},
            },
            "set in both kafka.config and kafka.configFromSecrets",
        ),
    ],
)
def test_config_from_secrets_is_checked(
    render_fails: FailFn, kafka: dict[str, Any], message: str
) -> None:
    assert message in render_fails(merge(MINIMAL, {"kafka": kafka}))


# --- autoscaling that does not flap ---


def test_keda_defaults_read_from_earliest_and_do_not_flap(render: RenderFn) -> None:
    scaled = render(merge(MINIMAL, KEDA)).one("ScaledObject")["spec"]
    trigger = scaled["triggers"][0]["metadata"]
    # The connector starts a new group at the earliest offset: KEDA must count lag the same way,
    # or a new group scaled to zero never sees lag and never scales up.
    assert trigger["offsetResetPolicy"] == "earliest"
    assert int(trigger["lagThreshold"]) >= 1000
    scale_down = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 600
    assert scale_down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 120}]


def test_hpa_scales_down_slowly_by_default(render: RenderFn) -> None:
    hpa = render(merge(MINIMAL, {"autoscaling": {"enabled": True}})).one("HorizontalPodAutoscaler")
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 600


def test_keda_trigger_authentication_carries_tls_material(render: RenderFn) -> None:
    values = merge(
        merge(MINIMAL, KEDA),
        {
            "kafka": {"sasl": {"securityProtocol": "SSL"}},
            "keda": {
                "tls": {"existingSecret": "kafka-tls", "certKey": "tls.crt", "keyKey": "tls.key"}
            },
        },
    )
    out = render(values)
    refs = out.one("TriggerAuthentication")["spec"]["secretTargetRef"]
    assert {(r["parameter"], r["name"], r["key"]) for r in refs} == {
        ("ca", "kafka-tls", "ca.crt"),
        ("cert", "kafka-tls", "tls.crt"),
        ("key", "kafka-tls", "tls.key"),
    }
    trigger = out.one("ScaledObject")["spec"]["triggers"][0]
    assert trigger["metadata"]["tls"] == "enable"
    assert (
        trigger["authenticationRef"]["name"] == out.one("TriggerAuthentication")["metadata"]["name"]
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {
                "kafka": {"sasl": {"securityProtocol": "SSL"}},
                "keda": {"tls": {"existingSecret": "t", "certKey": "c"}},
            },
            "keda.tls.certKey and keda.tls.keyKey go together",
        ),
        ({"keda": {"tls": {"existingSecret": "t"}}}, "keda.tls.existingSecret needs"),
    ],
)
def test_keda_tls_is_checked(render_fails: FailFn, override: dict[str, Any], message: str) -> None:
    assert message in render_fails(merge(merge(MINIMAL, KEDA), override))


# --- names of monitoring objects in a shared namespace ---


def _monitoring_names(render: RenderFn, namespace: str) -> set[tuple[str, str]]:
    values = merge(
        MINIMAL,
        {
            "metrics": {
                "serviceMonitor": {"enabled": True, "namespace": "monitoring"},
                "prometheusRule": {"enabled": True, "namespace": "monitoring"},
                "dashboard": {"enabled": True, "namespace": "monitoring"},
            }
        },
    )
    # The later --namespace wins over the fixture's own.
    out = render(values, extra=("--namespace", namespace))
    kinds = ("ServiceMonitor", "PrometheusRule", "ConfigMap")
    return {
        (d["kind"], d["metadata"]["name"])
        for d in out.docs
        if d["kind"] in kinds and d["metadata"]["namespace"] == "monitoring"
    }


def test_same_named_releases_do_not_collide_in_a_shared_namespace(render: RenderFn) -> None:
    team_a = _monitoring_names(render, "team-a")
    team_b = _monitoring_names(render, "team-b")
    assert team_a == {
        ("ServiceMonitor", "team-a-inkit-connector"),
        ("PrometheusRule", "team-a-inkit-connector"),
        ("ConfigMap", "team-a-inkit-connector-dashboard"),
    }
    assert team_a.isdisjoint(team_b)


def test_monitoring_objects_in_the_release_namespace_keep_the_full_name(render: RenderFn) -> None:
    out = render(merge(MINIMAL, MONITORING_ON))
    assert out.one("ServiceMonitor")["metadata"]["name"] == "inkit-connector"
    assert out.one("PrometheusRule")["metadata"]["name"] == "inkit-connector"
    assert out.one("ConfigMap", "-dashboard")["metadata"]["name"] == "inkit-connector-dashboard"


# --- scheduling ---


def test_soft_anti_affinity_and_zone_spread_by_default(render: RenderFn) -> None:
    spec = pod_spec(render(MINIMAL))
    selector = {
        "app.kubernetes.io/name": "inkit-connector",
        "app.kubernetes.io/instance": "inkit-connector",
    }
    (preferred,) = spec["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert preferred["podAffinityTerm"] == {
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": selector},
    }
    assert (
        "requiredDuringSchedulingIgnoredDuringExecution" not in spec["affinity"]["podAntiAffinity"]
    )
    (spread,) = spec["topologySpreadConstraints"]
    assert spread == {
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": selector},
    }


def test_hard_anti_affinity_and_user_rules_win(render: RenderFn) -> None:
    hard = pod_spec(render(merge(MINIMAL, {"podAntiAffinity": "hard", "zoneSpread": False})))
    assert "requiredDuringSchedulingIgnoredDuringExecution" in hard["affinity"]["podAntiAffinity"]
    assert "topologySpreadConstraints" not in hard
    own = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["kafka"]}]}
                ]
            }
        }
    }
    mine = pod_spec(render(merge(MINIMAL, {"affinity": own, "podAntiAffinity": ""})))
    assert mine["affinity"] == own
    none = pod_spec(render(merge(MINIMAL, {"podAntiAffinity": ""})))
    assert "affinity" not in none


# --- helm test ---


def test_helm_test_pod_checks_the_service_with_a_restricted_pod(render: RenderFn) -> None:
    out = render(MINIMAL)
    (pod,) = out.all("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    service = out.one("Service")
    script = pod["spec"]["containers"][0]["command"][-1]
    assert f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}" in script
    assert "/healthz" in script
    assert pod["spec"]["containers"][0]["image"] == out.container["image"]
    ctx = pod["spec"]["containers"][0]["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    # Not a connector pod: the Service, the PDB and the NetworkPolicy selectors miss it.
    labels = pod["metadata"]["labels"]
    selector = service["spec"]["selector"]
    assert not all(labels.get(k) == v for k, v in selector.items())


def test_network_policy_admits_the_helm_test_pod(render: RenderFn) -> None:
    values = merge(
        MINIMAL,
        {
            "networkPolicy": {
                "enabled": True,
                "kafka": {"cidrs": ["10.0.0.0/8"]},
                "schemaRegistry": {"cidrs": ["10.1.0.0/16"]},
            }
        },
    )
    out = render(values)
    (pod,) = out.all("Pod")
    (rule,) = out.one("NetworkPolicy")["spec"]["ingress"]
    same_namespace = [
        p["podSelector"]["matchLabels"] for p in rule["from"] if set(p) == {"podSelector"}
    ]
    labels = pod["metadata"]["labels"]
    assert any(sel.items() <= labels.items() for sel in same_namespace)
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]


def test_helm_test_can_be_turned_off(render: RenderFn) -> None:
    assert render(merge(MINIMAL, {"tests": {"enabled": False}})).all("Pod") == []


# --- Secret rotation ---


def test_reloader_annotation_lists_the_secrets_the_pods_read(render: RenderFn) -> None:
    assert "annotations" not in render(MINIMAL).deployment["metadata"]
    values = merge(
        MINIMAL,
        {
            "secretReloader": {"enabled": True},
            "kafka": {
                "sasl": {
                    "securityProtocol": "SASL_SSL",
                    "mechanism": "PLAIN",
                    "existingSecret": "kafka-creds",
                    "username": "",
                },
                "configFromSecrets": {"ssl.key.password": {"name": "kafka-tls", "key": "p"}},
            },
        },
    )
    annotations = render(values).deployment["metadata"]["annotations"]
    assert (
        annotations["secret.reloader.stakater.com/reload"]
        == "inkit-connector,kafka-creds,kafka-tls"
    )


# --- NetworkPolicy ---


def _egress_ports(policy: dict[str, Any]) -> list[list[tuple[int, str]]]:
    return [
        sorted((p["port"], p["protocol"]) for p in rule["ports"])
        for rule in policy["spec"]["egress"]
    ]


def test_json_format_needs_no_registry_egress(render: RenderFn) -> None:
    values = merge(
        MINIMAL,
        {
            "kafka": {"valueFormat": "json"},
            "networkPolicy": {"enabled": True, "kafka": {"cidrs": ["10.0.0.0/8"]}},
        },
    )
    policy = render(values).one("NetworkPolicy")
    assert [(8081, "TCP")] not in _egress_ports(policy)


def test_dns_egress_ports_and_node_local_cidrs(render: RenderFn) -> None:
    values = merge(
        MINIMAL,
        {
            "networkPolicy": {
                "enabled": True,
                "kafka": {"cidrs": ["10.0.0.0/8"]},
                "schemaRegistry": {"cidrs": ["10.1.0.0/16"]},
                "dns": {"ports": [53, 5353], "cidrs": ["169.254.20.10/32"]},
            }
        },
    )
    policy = render(values).one("NetworkPolicy")
    dns = next(r for r in policy["spec"]["egress"] if any(p["port"] == 5353 for p in r["ports"]))
    assert sorted((p["port"], p["protocol"]) for p in dns["ports"]) == [
        (53, "TCP"),
        (53, "UDP"),
        (5353, "TCP"),
        (5353, "UDP"),
    ]
    assert {"ipBlock": {"cidr": "169.254.20.10/32"}} in dns["to"]


def test_values_file_keeps_the_documented_defaults() -> None:
    """The defaults the issue asked for, read from values.yaml itself (what `helm show values`
    prints), so a later edit that reverts one fails here and not in production."""
    from tests.helm.conftest import CHART

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["keda"]["offsetResetPolicy"] == "earliest"
    assert values["podAntiAffinity"] == "soft"
    assert values["zoneSpread"] is True
    assert values["tests"]["enabled"] is True
    assert values["secretReloader"]["enabled"] is False
