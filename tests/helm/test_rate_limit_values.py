"""The chart's rate-limit values reach the connector's environment, and the rendered environment
is one the connector accepts."""

from __future__ import annotations

from connector.settings import Settings
from tests.helm.conftest import MINIMAL, RenderFn, merge

REQUIRED = {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_TOPIC": "t", "INKIT_API_KEY": "x"}


def test_defaults_keep_the_per_pod_limit(render: RenderFn) -> None:
    config = render(MINIMAL).config
    assert config["INKIT_RATE_LIMIT_SCOPE"] == "pod"
    assert config["INKIT_RATE_LIMIT_ADAPTIVE"] == "false"
    assert "INKIT_RATE_LIMIT" not in config
    assert "INKIT_RATE_LIMIT_PROBE_STEP" not in config


def test_group_scope_and_adaptive_mode_are_wired(render: RenderFn) -> None:
    inkit = {
        "rateLimit": 120,
        "rateLimitScope": "group",
        "rateLimitAdaptive": True,
        "rateLimitMin": 5,
        "rateLimitProbeStep": 2.5,
    }
    config = render(merge(MINIMAL, {"inkit": inkit})).config
    settings = Settings.from_env({**config, **REQUIRED, "KAFKA_VALUE_FORMAT": "json"})
    assert settings.rate_limit == 120
    assert settings.rate_limit_scope == "group"
    assert settings.rate_limit_adaptive is True
    assert settings.rate_limit_min == 5
    assert settings.rate_limit_probe_step == 2.5
