"""Composition root of `inkit-connector run`: build every collaborator from Settings, install
signal handlers, run the consume loop, and close everything in order."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

import httpx
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry, disable_created_metrics

from connector import __version__
from connector.cli.check import (
    check_ca_bundle,
    check_registry,
    group_protocol,
    kafka_topics,
    prepare_ledger,
)
from connector.delivery.breaker import BreakerAction, CircuitBreaker
from connector.delivery.handoff import admin_committed_reader, admin_group_members
from connector.delivery.processor import Processor
from connector.errors import ConnectorError, ConsumerError, StartupError
from connector.events.decoding import build_decoder
from connector.events.mapping import Mapper
from connector.inkit.client import InkitClient
from connector.inkit.group_share import (
    ShareWatcher,
    assigned_partitions,
    topic_partition_count,
)
from connector.inkit.netio import build_transport
from connector.inkit.ratelimit import RateControl, build_rate_control
from connector.inkit.sender import Sender
from connector.kafka.consumer import (
    admin_config,
    build_consumer,
    build_producer,
    describe,
    scanner_config,
)
from connector.kafka.dlq import DeadLetterQueue
from connector.kafka.dlq_recovery import DeadLetterScanner
from connector.kafka.group_lag import GroupLagMonitor
from connector.kafka.ledger import SentLedger
from connector.models import AmbiguousPolicy, InkitRequest
from connector.observability.health import HealthServer
from connector.observability.metrics import Metrics
from connector.settings import Settings

logger = logging.getLogger(__name__)

# /healthz fails when the loop has not turned for this long (a wedged process gets restarted).
# It must exceed the longest legitimate pause of the loop: a drain on revoke.
WEDGED_AFTER_S = 60.0
# close() leaves the group; if a rebalance holds it, give up rather than outlive the grace period.
CLOSE_TIMEOUT_S = 5.0
SHUTDOWN_MARGIN_S = 5.0
# Connections per httpx pool; INKIT_MAX_IN_FLIGHT is spread over as many pools as needed.
HTTP_POOL_SHARD = 4


class DryRunClient:
    """Stands in for InkitClient under --dry-run: logs what would be sent, sends nothing."""

    async def send(self, request: InkitRequest) -> int:
        redacted = request.redacted()
        logger.info(
            "dry run: would POST %s (message %s, template %s, fields %s)",
            redacted.url,
            request.message_id,
            request.body.get("template_id"),
            ",".join(sorted(k for k in request.body if k != "api_token")),
        )
        return 200


def build_http_transports(settings: Settings) -> list[httpx.AsyncBaseTransport]:
    """HTTP transports whose pools add up to INKIT_MAX_IN_FLIGHT connections, in shards of at
    most HTTP_POOL_SHARD connections (see InkitClient for why)."""
    shards = -(-settings.max_in_flight // HTTP_POOL_SHARD)
    size = -(-settings.max_in_flight // shards)
    limits = httpx.Limits(
        max_connections=size, max_keepalive_connections=size, keepalive_expiry=30.0
    )
    return [
        build_transport(settings.inkit_api_url, limits=limits, ca_bundle=settings.ca_bundle)
        for _ in range(shards)
    ]


def http_timeout(settings: Settings) -> httpx.Timeout:
    return httpx.Timeout(settings.timeout_s, connect=min(settings.timeout_s, 5.0))


def build_sender(
    settings: Settings,
    metrics: Metrics,
    rate_control: RateControl | None,
    *,
    dry_run: bool,
) -> Sender:
    """The sender `run` and `redrive` share: its HTTP transports are made on the sender's own loop
    (and closed there), or a DryRunClient under --dry-run."""
    transports: list[httpx.AsyncBaseTransport] = []

    def client_factory() -> Any:
        if dry_run:
            return DryRunClient()
        transports.extend(build_http_transports(settings))
        shard_size = -(-settings.max_in_flight // len(transports))  # as build_http_transports
        return InkitClient(
            transports, metrics, shard_size=shard_size, timeout=http_timeout(settings)
        )

    async def close_client() -> None:
        for transport in transports:
            await transport.aclose()

    return Sender(
        client_factory,
        metrics,
        retry_max_s=settings.retry_max_s,
        rate_control=rate_control,
        close_client=close_client,
        ambiguous_policy=AmbiguousPolicy(settings.ambiguous_send_policy),
    )


def run(settings: Settings, *, dry_run: bool = False) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code."""
    # One `_created` gauge per counter and histogram series doubles the series count for a value
    # no dashboard or alert of ours reads.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client
    registry = CollectorRegistry(auto_describe=True)
    metrics = Metrics(registry)
    check_ca_bundle(settings)
    partitions = kafka_topics(settings)
    registry_check = check_registry(settings)
    if not registry_check.ok:
        raise StartupError(f"schema registry {registry_check.detail}")
    processor_ref: list[Processor] = []
    sender_ref: list[Sender] = []

    def alive() -> tuple[bool, str]:
        if sender_ref and not sender_ref[0].alive:
            return False, "the Inkit sender thread is not running"
        if not processor_ref:
            return True, "starting"
        age = time.monotonic() - processor_ref[0].heartbeat
        if age > WEDGED_AFTER_S:
            return False, f"consume loop has not turned for {age:.0f}s"
        return True, "ok"

    def ready() -> tuple[bool, str]:
        if not processor_ref or not processor_ref[0].running:
            return False, "not running"
        if processor_ref[0].auth_blocked:
            return False, "Inkit refuses the API key"
        if processor_ref[0].breaker_open:
            return False, "circuit breaker open: records fail for one systemic reason"
        return True, "ok"

    try:  # bind before any Kafka client exists: a busy port is one line, nothing to close
        health = HealthServer(
            registry,
            host=settings.metrics_host,
            port=settings.metrics_port,
            alive=alive,
            ready=ready,
        )
    except OSError as exc:
        raise StartupError(
            f"cannot listen on {settings.metrics_host}:{settings.metrics_port} "
            f"({exc.strerror}): set METRICS_PORT to a free port"
        ) from exc

    use_ledger = settings.ledger_enabled and not dry_run
    ledger_note = prepare_ledger(settings, partitions[settings.topic]) if use_ledger else ""
    # Only now: a start-up failure is one line on stderr, not a configuration dump and a line.
    logger.info(
        "inkit-connector %s starting (dry run: %s); configuration: %s",
        __version__,
        dry_run,
        settings.redacted(),
    )

    logger.info("topic %s has %d partitions", settings.topic, partitions[settings.topic])
    protocol, why = group_protocol(settings)
    logger.info("consumer group protocol: %s (%s)", protocol, why)
    decoder = build_decoder(settings)
    mapper = Mapper(settings, metrics)

    def on_kafka_error(err: Any) -> None:
        if err.fatal() and processor_ref:
            processor_ref[0].fail(ConsumerError(describe(err)))
        logger.warning("Kafka: %s", describe(err))

    def on_commit(err: Any, partitions: list[Any]) -> None:
        if processor_ref:
            processor_ref[0].on_commit(err, partitions)

    consumer = build_consumer(settings, on_kafka_error, on_commit, protocol)
    producer = None if dry_run else build_producer(settings, on_kafka_error)
    dlq = (
        None
        if producer is None
        else DeadLetterQueue(producer, settings.dlq_topic, metrics, settings.group_id)
    )

    def on_side_client_error(err: Any) -> None:
        logger.warning("Kafka (dead-letter scan or offset reads): %s", describe(err))

    admin = AdminClient(admin_config(settings, on_side_client_error))
    scanner = DeadLetterScanner(
        lambda: Consumer(scanner_config(settings, on_side_client_error)),
        settings.dlq_topic,
        settings.group_id,
    )
    ledger = None
    if use_ledger and producer is not None:
        logger.info("sent-ledger: %s", ledger_note)
        ledger = SentLedger(
            producer=producer,
            consumer_factory=lambda: Consumer(scanner_config(settings, on_side_client_error)),
            topic=settings.ledger_topic,
            window_s=settings.dedupe_window_s,
            metrics=metrics,
            group_id=settings.group_id,
        )
        seconds = ledger.load()
        logger.info(
            "sent-ledger %s read in %.2fs: %d events sent within the last %.0f h are skipped",
            settings.ledger_topic,
            seconds,
            ledger.size,
            settings.dedupe_window_s / 3600,
        )
    rate_control = build_rate_control(settings, metrics)
    sender = build_sender(settings, metrics, rate_control, dry_run=dry_run)
    sender_ref.append(sender)
    # INKIT_RATE_LIMIT_SCOPE=group: the share follows this member's assignment (group_share.py).
    share_watcher = None
    if rate_control is not None and settings.rate_limit_scope == "group":
        share_watcher = ShareWatcher(
            settings.topic,
            lambda: assigned_partitions(registry),
            lambda: topic_partition_count(admin, settings.topic),
            sender.set_rate_share,
            initial_total=partitions[settings.topic],
        )
    processor = Processor(
        consumer=consumer,
        decoder=decoder,
        mapper=mapper,
        sender=sender,
        dlq=dlq,
        metrics=metrics,
        topic=settings.topic,
        max_in_flight=settings.max_in_flight,
        max_buffered=settings.max_buffered_records,
        max_uncommitted=settings.max_uncommitted_records,
        drain_timeout_s=settings.drain_timeout_s,
        commit_interval_s=settings.commit_interval_s,
        commit=not dry_run,
        scanner=None if dry_run else scanner,
        committed_reader=admin_committed_reader(admin, settings.group_id),
        breaker=build_breaker(settings, dry_run=dry_run),
        group_members=admin_group_members(admin, settings.group_id),
        ledger=ledger,
        max_event_age_s=settings.max_event_age_s,
        ambiguous_policy=AmbiguousPolicy(settings.ambiguous_send_policy),
    )
    processor_ref.append(processor)
    signals: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals.append(signum)
        if len(signals) > 1:
            logger.warning(
                "received %s again: stopping at once (in-flight requests are abandoned, "
                "finished records committed; a restart re-sends the rest)",
                signal.Signals(signum).name,
            )
            processor.abort()
            return
        logger.info(
            "received %s: draining and stopping (send it again to stop at once)",
            signal.Signals(signum).name,
        )
        processor.request_stop()
        # The drain, the final commit and close() are each bounded, but librdkafka can hold a
        # commit or a close behind a rebalance for a minute: never outlive the shutdown budget
        # (keep it below Kubernetes' terminationGracePeriodSeconds).
        budget_s = 2 * settings.drain_timeout_s + SHUTDOWN_MARGIN_S
        watchdog = threading.Timer(budget_s, _give_up, args=(budget_s,))
        watchdog.daemon = True
        watchdog.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    health.start()
    logger.info("metrics, /healthz and /readyz on port %d", health.port)
    # The group's lag as the broker sees it (kafka/group_lag.py): catches a stalled member. Its
    # own AdminClient: its reads never queue in front of the handoff fence's offset reads.
    lag_admin = AdminClient(admin_config(settings, on_side_client_error))
    group_lag = GroupLagMonitor(lag_admin, settings.group_id, settings.topic, metrics)
    group_lag.start()
    try:
        sender.start()  # raises StartupError (one line) if its HTTP client cannot be built
        if share_watcher is not None:
            share_watcher.start()
        metrics.ready.set(1)
        processor.subscribe()
        processor.run()
    except ConnectorError:
        raise  # a known failure: the CLI prints its one line
    except Exception:
        # A bug, not a condition we know: log it whole and exit non-zero so that Kubernetes
        # restarts the pod. Nothing was committed past a record that did not finish.
        logger.exception("unexpected error in the consume loop; exiting")
        return 1
    finally:
        metrics.ready.set(0)
        if share_watcher is not None:
            share_watcher.stop()
        _close_within(consumer, CLOSE_TIMEOUT_S)
        if producer is not None:
            producer.flush(10)
        scanner.close()
        group_lag.stop()
        if ledger is not None:
            ledger.close()
        sender.stop()
        health.stop()
        logger.info("inkit-connector stopped")
    return 130 if len(signals) > 1 else 0


def build_breaker(settings: Settings, *, dry_run: bool = False) -> CircuitBreaker:
    """The circuit breaker from BREAKER_* (BREAKER_MIN_FAILURES=0 switches it off). A dry run
    holds nothing: it reports that the breaker would open and reads on."""
    return CircuitBreaker(
        min_failures=max(1, settings.breaker_min_failures),
        failure_ratio=settings.breaker_failure_ratio,
        action=BreakerAction.DEAD_LETTER if dry_run else BreakerAction(settings.breaker_action),
        enabled=settings.breaker_min_failures > 0,
    )


def _close_within(consumer: Any, timeout_s: float) -> None:
    """Close the consumer (leave the group so partitions move at once), bounded in time."""
    closer = threading.Thread(target=consumer.close, name="consumer-close", daemon=True)
    closer.start()
    closer.join(timeout_s)
    if closer.is_alive():
        logger.warning("consumer close did not finish within %.0fs; exiting anyway", timeout_s)


def _give_up(budget_s: float) -> None:
    logger.error(
        "shutdown exceeded %.0fs (a rebalance held the final commit or close); exiting now: "
        "records delivered since the last commit may be sent again by the next owner",
        budget_s,
    )
    logging.shutdown()
    os._exit(1)  # not a clean stop: say so to Kubernetes and to whoever reads the exit code
