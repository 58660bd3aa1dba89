"""values.schema.json rejects bad values before anything renders; good values still pass."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helm.conftest import CHART, MINIMAL, FailFn, RenderFn, merge

SCHEMA_ERROR = "values don't meet the specifications of the schema"

BAD_VALUES: dict[str, dict[str, Any]] = {
    "replicas-wrong-type": {"replicaCount": "two"},
    "replicas-negative": {"replicaCount": -1},
    "unknown-top-level-key": {"replicas": 2},
    "unknown-key-in-kafka": {"kafka": {"topics": ["a"]}},
    "unknown-key-in-inkit": {"inkit": {"apiToken": "x"}},
    "unknown-key-in-keda": {"keda": {"maxReplicas": 3}},
    "unknown-key-in-pdb": {"podDisruptionBudget": {"enable": True}},
    "unknown-key-in-network-policy": {"networkPolicy": {"kafka": {"cidr": "10.0.0.0/8"}}},
    "inkit-mode-enum": {"inkit": {"mode": "email"}},
    "max-in-flight-negative": {"inkit": {"maxInFlight": -1}},
    "max-in-flight-zero": {"inkit": {"maxInFlight": 0}},
    "max-in-flight-too-high": {"inkit": {"maxInFlight": 5000}},
    "max-in-flight-float": {"inkit": {"maxInFlight": 1.5}},
    "rate-limit-negative": {"inkit": {"rateLimit": -5}},
    "timeout-zero": {"inkit": {"timeoutSeconds": 0}},
    "inkit-api-url-no-scheme": {"inkit": {"apiUrl": "api.inkit.com/v1/render"}},
    "log-format-enum": {"logFormat": "xml"},
    "log-level-enum": {"logLevel": "TRACE"},
    "value-format-enum": {"kafka": {"valueFormat": "protobuf"}},
    "sasl-mechanism-enum": {"kafka": {"sasl": {"mechanism": "SCRAM"}}},
    "security-protocol-enum": {"kafka": {"sasl": {"securityProtocol": "TLS"}}},
    "kafka-config-key-shape": {"kafka": {"config": {"Session_Timeout_Ms": "1000"}}},
    "kafka-config-value-type": {"kafka": {"config": {"client.id": ["a"]}}},
    "registry-url-no-scheme": {"schemaRegistry": {"url": "schema-registry:8081"}},
    "registry-user-info-shape": {"schemaRegistry": {"basicAuth": {"userInfo": "no-colon"}}},
    "drain-negative": {"drainTimeoutSeconds": -1},
    "grace-as-string": {"terminationGracePeriodSeconds": "45s"},
    "metrics-port-out-of-range": {"metrics": {"port": 70000}},
    "metrics-port-privileged": {"metrics": {"port": 80}},
    "scrape-interval-shape": {"metrics": {"serviceMonitor": {"interval": "fast"}}},
    "image-digest-shape": {"image": {"digest": "latest"}},
    "pull-policy-enum": {"image": {"pullPolicy": "Sometimes"}},
    "keda-without-partition-count": {"keda": {"enabled": True}},
    "keda-partition-count-zero": {"keda": {"enabled": True, "partitionCount": 0}},
    "keda-max-replicas-zero": {"keda": {"maxReplicaCount": 0}},
    "keda-offset-reset-enum": {"keda": {"offsetResetPolicy": "smallest"}},
    "keda-lag-threshold-string": {"keda": {"lagThreshold": "lots"}},
    "hpa-min-replicas-zero": {"autoscaling": {"minReplicas": 0}},
    "network-policy-cidr-shape": {"networkPolicy": {"kafka": {"cidrs": ["kafka"]}}},
    "network-policy-port-range": {"networkPolicy": {"inkit": {"ports": [0]}}},
    "pdb-eviction-policy-enum": {"podDisruptionBudget": {"unhealthyPodEvictionPolicy": "Never"}},
    "extra-env-without-name": {"extraEnv": [{"value": "x"}]},
}


@pytest.mark.parametrize("override", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_schema_rejects(render_fails: FailFn, override: dict[str, Any]) -> None:
    assert SCHEMA_ERROR in render_fails(merge(MINIMAL, override))


def test_max_replicas_above_partitions_is_rejected_by_the_template(render_fails: FailFn) -> None:
    # JSON Schema cannot compare two values; the template does, with a message.
    keda = {"enabled": True, "partitionCount": 4, "maxReplicaCount": 5}
    assert "must not exceed keda.partitionCount" in render_fails(merge(MINIMAL, {"keda": keda}))


GOOD_VALUES: dict[str, dict[str, Any]] = {
    "float-timeouts": {"inkit": {"timeoutSeconds": 2.5, "rateLimit": 12.5}},
    "kafka-config-types": {"kafka": {"config": {"fetch.wait.max.ms": 100, "check.crcs": True}}},
    "pdb-percent": {"podDisruptionBudget": {"maxUnavailable": "50%"}},
    "scale-to-zero": {"keda": {"enabled": True, "partitionCount": 3, "minReplicaCount": 0}},
    "global-block": {"global": {"imageRegistry": "x"}},
}


@pytest.mark.parametrize("override", GOOD_VALUES.values(), ids=GOOD_VALUES.keys())
def test_schema_accepts(render: RenderFn, override: dict[str, Any]) -> None:
    render(merge(MINIMAL, override))


def test_our_blocks_are_closed() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    open_blocks = [
        name
        for name, prop in schema["properties"].items()
        if prop.get("type") == "object"
        and "properties" in prop
        and prop.get("additionalProperties") is not False
    ]
    assert open_blocks == []
