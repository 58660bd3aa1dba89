"""The chart takes every KAFKA_VALUE_FORMAT; both confluent-* formats read the Schema Registry."""

from __future__ import annotations

from typing import Any

from tests.helm.conftest import MINIMAL, FailFn, RenderFn, merge


def test_confluent_json_sets_the_format_and_opens_registry_egress(render: RenderFn) -> None:
    values: dict[str, Any] = merge(
        MINIMAL,
        {
            "kafka": {"valueFormat": "confluent-json"},
            "networkPolicy": {
                "enabled": True,
                "kafka": {"cidrs": ["10.0.0.0/8"]},
                "schemaRegistry": {"cidrs": ["10.1.0.0/16"]},
            },
        },
    )
    out = render(values)
    assert out.config["KAFKA_VALUE_FORMAT"] == "confluent-json"
    egress = out.one("NetworkPolicy")["spec"]["egress"]
    assert any({"ipBlock": {"cidr": "10.1.0.0/16"}} in rule.get("to", []) for rule in egress)


def test_confluent_json_without_a_registry_fails_to_render(render_fails: FailFn) -> None:
    values = merge(
        MINIMAL, {"kafka": {"valueFormat": "confluent-json"}, "schemaRegistry": {"url": ""}}
    )
    assert "kafka.valueFormat=confluent-json needs schemaRegistry.url" in render_fails(values)
