"""Start-up checks shared by `run` (fail fast) and `check` (report every item)."""

from __future__ import annotations

import logging
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

# Public as confluent_kafka.admin.*, but not re-exported there for type checkers.
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType

from connector.errors import ConfigError, StartupError
from connector.kafka.ledger_topic import ensure_ledger_topic, ledger_topic_state
from connector.kafka.security_errors import explain as explain_security_error
from connector.settings import Settings

logger = logging.getLogger(__name__)

_METADATA_SLICE_S = 0.5


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


GROUP_PROTOCOLS_CONFIG = "group.coordinator.rebalance.protocols"


def group_protocol(settings: Settings, timeout_s: float = 5.0) -> tuple[str, str]:
    """The consumer group protocol to use, and why: KAFKA_CONFIG_GROUP_PROTOCOL when set; else
    `consumer` (KIP-848) when the brokers enable it (Kafka 4.0+), `classic` otherwise.

    librdkafka's classic cooperative protocol can hand a partition to a new member while its
    revoke callback still runs, and then wedge the group, when the topic's partition count
    changes mid-rebalance (see RELIABILITY.md); with KIP-848 the broker moves a partition only
    after its owner acknowledged the revocation. Reading the brokers' configuration needs the
    DescribeConfigs permission on the cluster; without it the connector stays on `classic`."""
    chosen = settings.kafka_extra.get("group.protocol")
    if chosen:
        return chosen, "set by KAFKA_CONFIG_GROUP_PROTOCOL"
    conf: dict[str, Any] = dict(settings.librdkafka_common())
    conf["logger"] = logging.getLogger("connector.librdkafka")
    conf["log_level"] = 2
    admin = AdminClient(conf)
    try:
        brokers = admin.list_topics(timeout=timeout_s).brokers
        resource = ConfigResource(ResourceType.BROKER, str(min(brokers)))
        configs = admin.describe_configs([resource], request_timeout=timeout_s)[resource].result()
    except (KafkaException, ValueError) as exc:
        return "classic", f"broker configuration not readable ({exc})"
    entry = configs.get(GROUP_PROTOCOLS_CONFIG)
    enabled = [] if entry is None or not entry.value else entry.value.split(",")
    if "consumer" in enabled:
        return "consumer", f"the brokers enable it ({GROUP_PROTOCOLS_CONFIG}={entry.value})"
    return "classic", "the brokers do not enable the consumer (KIP-848) protocol"


def kafka_topics(settings: Settings, timeout_s: float = 10.0) -> dict[str, int]:
    """Partition count of every topic the connector needs; raises StartupError with a line
    that says what to do when the brokers cannot be reached or a topic is missing."""
    errors: list[str] = []

    def on_error(err: Any) -> None:
        reason = explain_security_error(err, conf)  # wrong password, untrusted certificate...
        if reason is not None and not errors:
            errors.append(reason)

    conf: dict[str, Any] = dict(settings.librdkafka_common())
    conf["error_cb"] = on_error
    conf["logger"] = logging.getLogger("connector.librdkafka")
    # The check reports its own one-line verdict; librdkafka's per-attempt connection errors
    # (syslog level 3, repeated every few hundred ms) would bury it.
    conf["log_level"] = 2
    try:
        admin = AdminClient(conf)
    except KafkaException as exc:  # e.g. an ssl.* file that does not exist or does not parse
        # librdkafka refuses its configuration (_INVALID_ARG): a setting to fix, exit 2.
        raise ConfigError(
            f"Kafka client settings rejected: {exc.args[0].str()} (check KAFKA_CONFIG_* variables)"
        ) from exc
    # The error callback only runs when the client is polled, so wait in short slices: a refused
    # SASL password is then reported as such within a second instead of as a timeout.
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            metadata = admin.list_topics(timeout=_METADATA_SLICE_S)
            break
        except KafkaException as exc:
            admin.poll(0)
            if errors:
                raise StartupError(errors[0]) from exc
            if time.monotonic() >= deadline:
                raise StartupError(
                    f"cannot reach Kafka at {settings.bootstrap_servers} "
                    f"({exc.args[0].str()}): check KAFKA_BOOTSTRAP_SERVERS and network access"
                ) from exc
    found: dict[str, int] = {}
    for name in (settings.topic, settings.dlq_topic):
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None:
            which = "KAFKA_TOPIC" if name == settings.topic else "KAFKA_DLQ_TOPIC"
            raise StartupError(f"topic {name!r} does not exist: create it or fix {which}")
        found[name] = len(topic.partitions)
    return found


def check_registry(settings: Settings, timeout_s: float = 5.0) -> CheckResult:
    if not settings.schema_registry_url:
        return CheckResult(
            "schema registry", True, "not used (KAFKA_VALUE_FORMAT is not confluent-avro)"
        )
    auth = None
    if settings.schema_registry_user_info:
        user, _, password = settings.schema_registry_user_info.partition(":")
        auth = (user, password)
    url = settings.schema_registry_url.rstrip("/") + "/subjects"
    try:
        response = httpx.get(url, auth=auth, timeout=timeout_s)
    except httpx.HTTPError as exc:
        untrusted = _certificate_error(exc)
        if untrusted is not None:
            return CheckResult(
                "schema registry",
                False,
                f"TLS certificate of {settings.schema_registry_url} not accepted "
                f"({untrusted}): set SSL_CERT_FILE to a CA bundle that includes the registry's CA",
            )
        return CheckResult(
            "schema registry",
            False,
            f"unreachable at {settings.schema_registry_url} ({type(exc).__name__}): "
            "check SCHEMA_REGISTRY_URL",
        )
    if response.status_code in (401, 403):
        return CheckResult(
            "schema registry",
            False,
            f"HTTP {response.status_code} (credentials refused): "
            "check SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
        )
    if response.status_code >= 400:
        return CheckResult(
            "schema registry",
            False,
            f"HTTP {response.status_code} from {url}: check SCHEMA_REGISTRY_URL",
        )
    return CheckResult("schema registry", True, f"reachable at {settings.schema_registry_url}")


def check_ca_bundle(settings: Settings) -> None:
    """INKIT_CA_BUNDLE must be a readable PEM file of CAs: else no request could be sent (and
    `run`'s sender could not even start). Raises ConfigError with one line."""
    if settings.ca_bundle is None:
        return
    try:
        ssl.create_default_context(cafile=settings.ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a PEM CA file"
        raise ConfigError(f"INKIT_CA_BUNDLE={settings.ca_bundle}: {why}") from exc


def _certificate_error(exc: BaseException) -> str | None:
    """OpenSSL's reason when ``exc`` was caused by a failed certificate check, else None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.verify_message)
        seen = seen.__cause__ or seen.__context__
    return None


def _quiet_admin(settings: Settings) -> AdminClient:
    conf: dict[str, Any] = dict(settings.librdkafka_common())
    conf["logger"] = logging.getLogger("connector.librdkafka")
    conf["log_level"] = 2  # the one-line verdict, not librdkafka's per-attempt errors
    return AdminClient(conf)


def prepare_ledger(settings: Settings, partitions: int) -> str:
    """`run`: make sure the sent-ledger topic exists and is compacted (creating it when it is
    missing); StartupError with what to do otherwise. Returns what was done, for the log."""
    return ensure_ledger_topic(_quiet_admin(settings), settings.ledger_topic, partitions)


def check_ledger(settings: Settings, timeout_s: float = 10.0) -> CheckResult:
    """The sent-ledger topic exists and is compacted, or `run` may create it."""
    if not settings.ledger_enabled:
        return CheckResult("sent-ledger", True, "off (LEDGER_ENABLED=false)")
    topic = settings.ledger_topic
    try:
        policy = ledger_topic_state(_quiet_admin(settings), topic, timeout_s)
    except KafkaException as exc:
        return CheckResult("sent-ledger", False, f"{topic}: cannot describe it ({exc.args[0]})")
    if policy is None:
        return CheckResult(
            "sent-ledger",
            True,
            f"{topic} does not exist yet: `run` creates it (needs CREATE on the cluster), or "
            f"create it yourself: kafka-topics.sh --create --topic {topic} "
            "--config cleanup.policy=compact",
        )
    if "compact" not in policy.split(","):
        return CheckResult(
            "sent-ledger", False, f"{topic} has cleanup.policy={policy}: it must be compact"
        )
    return CheckResult("sent-ledger", True, f"{topic} (cleanup.policy={policy})")


def check_ambiguous_policy(settings: Settings) -> CheckResult:
    """What a send with an unknown outcome becomes (AMBIGUOUS_SEND_POLICY): said, not probed."""
    if settings.ambiguous_send_policy == "dead-letter":
        detail = (
            "dead-letter: a request that may have reached Inkit without an answer is "
            "dead-lettered as ambiguous_send, never sent twice (an intent in the sent-ledger "
            "before each send)"
        )
    else:
        detail = (
            "resend: a request that may have reached Inkit without an answer is retried "
            "(at least once: a letter may go twice)"
        )
    return CheckResult("ambiguous sends", True, detail)


def check_inkit(settings: Settings, timeout_s: float = 5.0) -> CheckResult:
    """INKIT_API_URL answers HTTP (the network path and TLS work) with anything but 404 (a
    wrong path would reject every event). A HEAD without the key: sends no data."""
    parts = urllib.parse.urlsplit(settings.inkit_api_url)
    try:
        check_ca_bundle(settings)
    except ConfigError as exc:
        return CheckResult("inkit", False, exc.detail)
    verify: Any = settings.ca_bundle or True
    try:
        response = httpx.head(settings.inkit_api_url, timeout=timeout_s, verify=verify)
    except httpx.HTTPError as exc:
        return CheckResult("inkit", False, f"{parts.netloc} unreachable ({type(exc).__name__})")
    if response.status_code == 404:
        return CheckResult(
            "inkit",
            False,
            f"{settings.inkit_api_url} answers 404 Not Found: check INKIT_API_URL and INKIT_MODE",
        )
    return CheckResult("inkit", True, f"{parts.netloc} answers (HTTP {response.status_code})")


def run_checks(settings: Settings, emit: Callable[[CheckResult], None]) -> bool:
    """Run every check, reporting each; True when all passed."""
    results: list[CheckResult] = []
    try:
        topics = kafka_topics(settings)
    except StartupError as exc:
        results.append(CheckResult("kafka", False, exc.detail))
    else:
        results.append(CheckResult("kafka", True, f"reachable at {settings.bootstrap_servers}"))
        results.append(
            CheckResult("topic", True, f"{settings.topic} ({topics[settings.topic]} partitions)")
        )
        results.append(CheckResult("dead-letter topic", True, settings.dlq_topic))
        protocol, why = group_protocol(settings)
        results.append(CheckResult("group protocol", True, f"{protocol}: {why}"))
        from connector.cli.sample import check_sample  # imports this module's CheckResult

        results.append(check_sample(settings))
        results.append(check_ledger(settings))
    results.append(check_ambiguous_policy(settings))
    results.append(check_registry(settings))
    results.append(check_inkit(settings))
    for result in results:
        emit(result)
    return all(r.ok for r in results)
