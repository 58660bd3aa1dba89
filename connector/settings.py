"""Configuration from environment variables, validated once at start-up.

Every setting the connector reads is declared in ``SETTINGS`` (settings_catalogue.py: name,
default, help). The README's configuration table is generated from it, and a test checks that
the two agree.
Modules never read ``os.environ``: ``app`` builds a ``Settings`` and passes it down.
"""

from __future__ import annotations

import ipaddress
import json
import os.path
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.env import EnvReader
from connector.errors import ConfigError
from connector.models import InkitMode
from connector.settings_catalogue import (
    DEFAULT_RENDER_URL,
    DEFAULT_WEBHOOK_URL,
    SETTINGS,
    SettingDoc,
)

VALUE_FORMATS = ("confluent-avro", "avro", "json", "confluent-json")
KAFKA_PASSTHROUGH_PREFIX = "KAFKA_CONFIG_"
RATE_LIMIT_SCOPES = ("pod", "group")

# librdkafka settings that would break "commit only after delivery", or that the connector owns.
_FORBIDDEN_KAFKA_KEYS = {
    "enable.auto.commit": "offsets are committed by the connector only after delivery",
    "enable.auto.offset.store": "offsets are stored by the connector only after delivery",
    "auto.commit.enable": "offsets are committed by the connector only after delivery",
    "group.id": "use KAFKA_GROUP_ID",
    "bootstrap.servers": "use KAFKA_BOOTSTRAP_SERVERS",
    "enable.partition.eof": "the connector sets this itself",
}


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated configuration. Build it with ``Settings.from_env``; it never changes."""

    bootstrap_servers: str
    topic: str
    group_id: str = "inkit-connector"
    dlq_topic: str = ""
    value_format: str = "confluent-avro"
    kafka_extra: Mapping[str, str] = field(
        default_factory=dict, repr=False
    )  # may hold SASL secrets
    avro_schema_file: str | None = None
    schema_registry_url: str | None = None
    schema_registry_user_info: str | None = field(default=None, repr=False)
    inkit_api_key: str | None = field(default=None, repr=False)
    inkit_mode: InkitMode = InkitMode.WEBHOOK
    inkit_api_url: str = DEFAULT_WEBHOOK_URL
    inkit_template_id: str | None = None
    inkit_destinations: Mapping[str, Any] | None = None
    require_full_address: bool = False
    send_audience_exits: bool = False
    max_in_flight: int = 64
    rate_limit: float | None = None
    rate_limit_scope: str = "pod"
    rate_limit_adaptive: bool = False
    rate_limit_min: float = 1.0
    rate_limit_probe_step: float | None = None
    timeout_s: float = 10.0
    retry_max_s: float = 14400.0
    ca_bundle: str | None = None
    metrics_port: int = 9464
    metrics_host: str = "0.0.0.0"  # noqa: S104 - a container's metrics port must be reachable
    drain_timeout_s: float = 20.0
    commit_interval_s: float = 1.0
    max_buffered_records: int = 1000
    max_uncommitted_records: int = 256
    ledger_enabled: bool = True
    ledger_topic: str = ""
    dedupe_window_s: float = 720 * 3600.0
    max_event_age_s: float | None = None
    ambiguous_send_policy: str = "resend"
    log_level: str = "INFO"
    log_format: str = "text"
    breaker_min_failures: int = 20
    breaker_failure_ratio: float = 0.5
    breaker_action: str = "pause"

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        require_kafka: bool = True,
        require_api_key: bool = True,
    ) -> Settings:
        """Read and validate every setting; raise ``ConfigError`` with one clear line."""
        r = EnvReader(env)
        bootstrap = r.text("KAFKA_BOOTSTRAP_SERVERS", required=require_kafka) or ""
        topic = r.text("KAFKA_TOPIC", required=require_kafka) or ""
        value_format = r.choice("KAFKA_VALUE_FORMAT", VALUE_FORMATS, "confluent-avro")
        registry = r.text("SCHEMA_REGISTRY_URL")
        if value_format.startswith("confluent-") and not registry:
            raise ConfigError(
                f"KAFKA_VALUE_FORMAT={value_format} needs SCHEMA_REGISTRY_URL "
                "(or set KAFKA_VALUE_FORMAT=avro or json)"
            )
        if registry:
            _check_url("SCHEMA_REGISTRY_URL", registry, allow_http=True)
        user_info = r.text("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO")
        if user_info is not None and ":" not in user_info:
            raise ConfigError("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO must look like user:password")

        mode = InkitMode(r.choice("INKIT_MODE", tuple(m.value for m in InkitMode), "webhook"))
        default_url = DEFAULT_WEBHOOK_URL if mode is InkitMode.WEBHOOK else DEFAULT_RENDER_URL
        url = r.text("INKIT_API_URL") or default_url
        _check_url("INKIT_API_URL", url, allow_http=r.flag("INKIT_ALLOW_INSECURE_HTTP", False))
        api_key = r.text("INKIT_API_KEY", required=require_api_key)
        destinations = None
        raw_destinations = r.text("INKIT_DESTINATIONS")
        if raw_destinations:
            try:
                destinations = json.loads(raw_destinations)
            except ValueError:
                destinations = None
            if not isinstance(destinations, dict):
                raise ConfigError(
                    'INKIT_DESTINATIONS must be a JSON object, e.g. {"inkit_storage": {}}'
                )
        max_in_flight = r.integer("INKIT_MAX_IN_FLIGHT", 64, low=1, high=4096)
        timeout_s = r.number("INKIT_TIMEOUT_SECONDS", 10.0, low=0.1, high=600)
        drain_s = r.number("DRAIN_TIMEOUT_SECONDS", 20.0, low=0.0, high=3600)
        buffered_default = max(1000, 8 * max_in_flight)
        rate_limit = r.optional_number("INKIT_RATE_LIMIT", low=0.01, high=1_000_000)
        settings = cls(
            bootstrap_servers=bootstrap,
            topic=topic,
            group_id=r.text("KAFKA_GROUP_ID") or "inkit-connector",
            dlq_topic=r.text("KAFKA_DLQ_TOPIC") or (f"{topic}.dlq" if topic else ""),
            value_format=value_format,
            avro_schema_file=_existing_file("AVRO_SCHEMA_FILE", r.text("AVRO_SCHEMA_FILE")),
            kafka_extra=_kafka_passthrough(env),
            schema_registry_url=registry,
            schema_registry_user_info=user_info,
            inkit_api_key=api_key,
            inkit_mode=mode,
            inkit_api_url=url,
            inkit_template_id=r.text("INKIT_TEMPLATE_ID"),
            inkit_destinations=destinations,
            require_full_address=r.flag("INKIT_REQUIRE_FULL_ADDRESS", False),
            send_audience_exits=r.flag("INKIT_SEND_AUDIENCE_EXITS", False),
            max_in_flight=max_in_flight,
            rate_limit=rate_limit,
            rate_limit_scope=r.choice("INKIT_RATE_LIMIT_SCOPE", RATE_LIMIT_SCOPES, "pod"),
            rate_limit_adaptive=r.flag("INKIT_RATE_LIMIT_ADAPTIVE", False),
            rate_limit_min=r.number("INKIT_RATE_LIMIT_MIN", 1.0, low=0.01, high=1_000_000),
            rate_limit_probe_step=r.optional_number(
                "INKIT_RATE_LIMIT_PROBE_STEP", low=0.001, high=1_000_000
            ),
            timeout_s=timeout_s,
            retry_max_s=r.number("INKIT_RETRY_MAX_SECONDS", 14400.0, low=0.0, high=30 * 86400),
            ca_bundle=r.text("INKIT_CA_BUNDLE"),
            metrics_port=r.integer("METRICS_PORT", 9464, low=0, high=65535),
            metrics_host=r.text("METRICS_HOST") or "0.0.0.0",  # noqa: S104
            drain_timeout_s=drain_s,
            commit_interval_s=r.number("COMMIT_INTERVAL_SECONDS", 1.0, low=0.0, high=600),
            max_buffered_records=r.integer(
                "MAX_BUFFERED_RECORDS", buffered_default, low=1, high=10_000_000
            ),
            max_uncommitted_records=r.integer(
                "MAX_UNCOMMITTED_RECORDS", 4 * max_in_flight, low=1, high=10_000_000
            ),
            ledger_enabled=r.flag("LEDGER_ENABLED", True),
            ledger_topic=r.text("KAFKA_LEDGER_TOPIC") or (f"{topic}.sent" if topic else ""),
            dedupe_window_s=3600 * r.number("DEDUPE_WINDOW_HOURS", 720.0, low=0.0, high=87_600),
            max_event_age_s=_hours(r.optional_number("MAX_EVENT_AGE_HOURS", low=0.0, high=87_600)),
            ambiguous_send_policy=r.choice(
                "AMBIGUOUS_SEND_POLICY", ("resend", "dead-letter"), "resend"
            ),
            log_level=r.choice(
                "LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO", upper=True
            ),
            log_format=r.choice("LOG_FORMAT", ("text", "json"), "text"),
            breaker_min_failures=r.integer("BREAKER_MIN_FAILURES", 20, low=0, high=100),
            breaker_failure_ratio=r.number("BREAKER_FAILURE_RATIO", 0.5, low=0.01, high=1.0),
            breaker_action=r.choice("BREAKER_ACTION", ("pause", "dead-letter"), "pause"),
        )
        if settings.dlq_topic and settings.dlq_topic == settings.topic:
            raise ConfigError("KAFKA_DLQ_TOPIC must differ from KAFKA_TOPIC")
        _check_rate_limit(settings)
        ledger = settings.ledger_topic
        if settings.ledger_enabled and ledger and ledger in (settings.topic, settings.dlq_topic):
            raise ConfigError("KAFKA_LEDGER_TOPIC must differ from KAFKA_TOPIC and KAFKA_DLQ_TOPIC")
        if settings.ambiguous_send_policy == "dead-letter" and not settings.ledger_enabled:
            # The intents that make a crash safe under this policy live in the sent-ledger.
            raise ConfigError("AMBIGUOUS_SEND_POLICY=dead-letter needs LEDGER_ENABLED=true")
        return settings

    def redacted(self) -> dict[str, Any]:
        """The effective configuration with every secret replaced, for logs and `check`."""
        extra = {
            k: ("[REDACTED]" if _is_secret_kafka_key(k) else v) for k, v in self.kafka_extra.items()
        }
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "KAFKA_TOPIC": self.topic,
            "KAFKA_GROUP_ID": self.group_id,
            "KAFKA_DLQ_TOPIC": self.dlq_topic,
            "KAFKA_VALUE_FORMAT": self.value_format,
            "AVRO_SCHEMA_FILE": self.avro_schema_file,
            "KAFKA_CONFIG": extra,
            "SCHEMA_REGISTRY_URL": self.schema_registry_url,
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": _mask(self.schema_registry_user_info),
            "INKIT_API_KEY": _mask(self.inkit_api_key),
            "INKIT_MODE": self.inkit_mode.value,
            "INKIT_API_URL": self.inkit_api_url,
            "INKIT_TEMPLATE_ID": self.inkit_template_id,
            "INKIT_DESTINATIONS": self.inkit_destinations,
            "INKIT_REQUIRE_FULL_ADDRESS": self.require_full_address,
            "INKIT_SEND_AUDIENCE_EXITS": self.send_audience_exits,
            "INKIT_MAX_IN_FLIGHT": self.max_in_flight,
            "INKIT_RATE_LIMIT": self.rate_limit,
            "INKIT_RATE_LIMIT_SCOPE": self.rate_limit_scope,
            "INKIT_RATE_LIMIT_ADAPTIVE": self.rate_limit_adaptive,
            "INKIT_RATE_LIMIT_MIN": self.rate_limit_min,
            "INKIT_RATE_LIMIT_PROBE_STEP": self.rate_limit_probe_step,
            "INKIT_TIMEOUT_SECONDS": self.timeout_s,
            "INKIT_RETRY_MAX_SECONDS": self.retry_max_s,
            "INKIT_CA_BUNDLE": self.ca_bundle,
            "METRICS_PORT": self.metrics_port,
            "METRICS_HOST": self.metrics_host,
            "DRAIN_TIMEOUT_SECONDS": self.drain_timeout_s,
            "COMMIT_INTERVAL_SECONDS": self.commit_interval_s,
            "MAX_BUFFERED_RECORDS": self.max_buffered_records,
            "MAX_UNCOMMITTED_RECORDS": self.max_uncommitted_records,
            "LEDGER_ENABLED": self.ledger_enabled,
            "KAFKA_LEDGER_TOPIC": self.ledger_topic,
            "DEDUPE_WINDOW_HOURS": self.dedupe_window_s / 3600,
            "MAX_EVENT_AGE_HOURS": _hours_back(self.max_event_age_s),
            "AMBIGUOUS_SEND_POLICY": self.ambiguous_send_policy,
            "LOG_LEVEL": self.log_level,
            "LOG_FORMAT": self.log_format,
            "BREAKER_MIN_FAILURES": self.breaker_min_failures,
            "BREAKER_FAILURE_RATIO": self.breaker_failure_ratio,
            "BREAKER_ACTION": self.breaker_action,
        }

    def librdkafka_common(self) -> dict[str, str]:
        """Settings shared by the consumer and the dead-letter producer (passthrough included)."""
        conf = {"bootstrap.servers": self.bootstrap_servers}
        conf.update(self.kafka_extra)
        return conf


def _check_rate_limit(settings: Settings) -> None:
    """INKIT_RATE_LIMIT_SCOPE=group and adaptive mode both need a rate to share or start from."""
    if settings.rate_limit is None:
        if settings.rate_limit_scope == "group":
            raise ConfigError(
                "INKIT_RATE_LIMIT_SCOPE=group needs INKIT_RATE_LIMIT (the group's rate)"
            )
        if settings.rate_limit_adaptive:
            raise ConfigError(
                "INKIT_RATE_LIMIT_ADAPTIVE=true needs INKIT_RATE_LIMIT (the rate it starts from "
                "and never exceeds)"
            )
    elif settings.rate_limit_adaptive and settings.rate_limit_min > settings.rate_limit:
        raise ConfigError("INKIT_RATE_LIMIT_MIN must not exceed INKIT_RATE_LIMIT")


def _hours(hours: float | None) -> float | None:
    return None if hours is None else hours * 3600.0


def _hours_back(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 3600.0


def _mask(value: str | None) -> str | None:
    return None if value is None else "[REDACTED]"


def _is_secret_kafka_key(key: str) -> bool:
    return any(word in key for word in ("password", "secret", "key", "token", "jaas"))


def _kafka_passthrough(env: Mapping[str, str]) -> dict[str, str]:
    extra: dict[str, str] = {}
    for name, value in env.items():
        if not name.startswith(KAFKA_PASSTHROUGH_PREFIX) or name == KAFKA_PASSTHROUGH_PREFIX:
            continue
        key = name[len(KAFKA_PASSTHROUGH_PREFIX) :].lower().replace("_", ".")
        if key in _FORBIDDEN_KAFKA_KEYS:
            raise ConfigError(f"{name} cannot be set: {_FORBIDDEN_KAFKA_KEYS[key]}")
        extra[key] = value
    return extra


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(name: str, url: str, *, allow_http: bool) -> None:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"{name} must be an http(s) URL with a host, got {url!r}")
    if parsed.scheme == "http" and not allow_http and not _is_loopback(parsed.hostname):
        raise ConfigError(
            f"{name} must use https (http is allowed only for a loopback host, "
            "or with INKIT_ALLOW_INSECURE_HTTP=true)"
        )


def _existing_file(name: str, path: str | None) -> str | None:
    """``path`` when it names a file; whether it parses is checked where it is read."""
    if path is not None and not os.path.isfile(path):
        raise ConfigError(f"{name} {path} is not a file")
    return path


__all__ = [
    "DEFAULT_RENDER_URL",
    "DEFAULT_WEBHOOK_URL",
    "SETTINGS",
    "SettingDoc",
    "Settings",
]
