"""`inkit-connector redrive`: send the dead letters again, decoded from their original bytes and
mapped with the current configuration, through the same Processor as `run` (per-user order,
retries, 429 throttle, auth gate, rate limit, sent-ledger, commits only over finished records).

Bounded: it captures the dead-letter topic's end offsets at start and stops there, so it never
reads the copies it writes itself. Its own consumer group (``<KAFKA_GROUP_ID>.redrive``) commits
as it goes: a redrive killed halfway resumes where it stopped, and the sent-ledger skips what an
earlier redrive (or the original, ambiguous send) already delivered, so running it twice sends
nothing twice. This module is its composition root and its command line."""

from __future__ import annotations

import dataclasses
import logging
import signal
from types import FrameType
from typing import Any, TextIO

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry, disable_created_metrics

from connector.cli.check import (
    check_ca_bundle,
    check_registry,
    group_protocol,
    kafka_topics,
    prepare_ledger,
)
from connector.cli.redrive_args import EXIT_FAILED_AGAIN, EXIT_INTERRUPTED, RedriveOptions
from connector.cli.redrive_report import Progress, summary
from connector.cli.run import _close_within, build_sender
from connector.delivery.breaker import BreakerAction, CircuitBreaker
from connector.delivery.handoff import admin_committed_reader, admin_group_members
from connector.delivery.redrive import RedrivePlan, RedriveProcessor
from connector.errors import ConsumerError, StartupError
from connector.events.decoding import build_decoder
from connector.events.mapping import Mapper
from connector.inkit.ratelimit import build_rate_control
from connector.inkit.sender import Sender
from connector.kafka.consumer import (
    admin_config,
    build_producer,
    consumer_config,
    describe,
    scanner_config,
)
from connector.kafka.dead_letter import redrive_headers
from connector.kafka.dlq import DeadLetterQueue
from connector.kafka.ledger import SentLedger
from connector.kafka.ledger_index import hash64
from connector.models import AmbiguousPolicy, RecordRef
from connector.observability.metrics import Metrics
from connector.settings import Settings

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 5.0


class _ReadOnlyLedger(SentLedger):
    """--dry-run: look events up, never write (the would-be delivery finishes at once)."""

    def record(self, identity: str, ref: RecordRef, done: Any) -> None:
        done()

    def intend(self, identity: str, ref: RecordRef, ready: Any) -> None:
        ready()

    def resolve(self, identity: str, done: Any = None) -> None:
        self._index.resolve(hash64(identity))  # this process's lookups only: nothing written
        if done is not None:
            done(True)


def run_redrive(settings: Settings, options: RedriveOptions, *, out: TextIO, err: TextIO) -> int:
    """Redrive once; return the exit code. ``err`` gets the progress (a bar when it is a
    terminal), ``out`` the summary."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client
    metrics = Metrics(CollectorRegistry(auto_describe=True))
    dry_run = options.dry_run
    group = options.group_id or f"{settings.group_id}.redrive"
    check_ca_bundle(settings)
    partitions = kafka_topics(settings)
    registry_check = check_registry(settings)
    if not registry_check.ok:
        raise StartupError(f"schema registry {registry_check.detail}")
    if settings.ledger_enabled and not dry_run:
        logger.info("sent-ledger: %s", prepare_ledger(settings, partitions[settings.topic]))
    protocol, _why = group_protocol(settings)
    processor_ref: list[RedriveProcessor] = []

    def on_kafka_error(error: Any) -> None:
        if error.fatal() and processor_ref:
            processor_ref[0].fail(ConsumerError(describe(error)))
        logger.warning("Kafka: %s", describe(error))

    def on_commit(error: Any, offsets: list[Any]) -> None:
        if processor_ref:
            processor_ref[0].on_commit(error, offsets)

    redrive_settings = dataclasses.replace(settings, group_id=group)
    conf = consumer_config(redrive_settings, on_kafka_error, on_commit, protocol)
    # A new redrive group reads the dead letters from the start, whatever KAFKA_CONFIG_* says.
    conf["auto.offset.reset"] = "earliest"
    consumer = Consumer(conf)
    producer = None if dry_run else build_producer(settings, on_kafka_error)
    admin = AdminClient(admin_config(settings, on_kafka_error))
    ledger: SentLedger | None = None
    sender: Sender | None = None
    try:
        plan = RedrivePlan.capture(consumer, settings.dlq_topic)
        ledger = _load_ledger(settings, producer, group, metrics, dry_run, on_kafka_error)

        sender = build_sender(
            settings, metrics, build_rate_control(settings, metrics), dry_run=dry_run
        )
        progress = Progress(err, plan.total, tty=err.isatty(), dry_run=dry_run)
        processor = RedriveProcessor(
            plan=plan,
            selection=dataclasses.replace(options.selection, group=settings.group_id),
            limit=options.limit,
            progress=progress,
            consumer=consumer,
            decoder=build_decoder(settings),
            mapper=Mapper(settings, metrics),
            sender=sender,
            dlq=None
            if producer is None
            else DeadLetterQueue(
                producer, settings.dlq_topic, metrics, settings.group_id, headers_of=redrive_headers
            ),
            metrics=metrics,
            topic=settings.dlq_topic,
            max_in_flight=settings.max_in_flight,
            max_buffered=settings.max_buffered_records,
            max_uncommitted=settings.max_uncommitted_records,
            drain_timeout_s=settings.drain_timeout_s,
            commit_interval_s=settings.commit_interval_s,
            commit=not dry_run,
            committed_reader=admin_committed_reader(admin, group),
            group_members=admin_group_members(admin, group),
            # A cause still there must not hold the redrive for ever: what fails again goes back
            # to the dead-letter topic, and the summary says so (exit 3).
            breaker=CircuitBreaker(
                min_failures=max(1, settings.breaker_min_failures),
                failure_ratio=settings.breaker_failure_ratio,
                action=BreakerAction.DEAD_LETTER,
                enabled=settings.breaker_min_failures > 0,
            ),
            ledger=ledger,
            max_event_age_s=settings.max_event_age_s,
            ambiguous_policy=AmbiguousPolicy(settings.ambiguous_send_policy),
        )
        processor_ref.append(processor)
        logger.info(
            "redrive of %s (group %s, %s): %d dead letters up to the end offsets %s",
            settings.dlq_topic,
            group,
            options.selection.describe(),
            plan.total,
            plan.ends,
        )
        _install_signal_handlers(processor)
        sender.start()
        sender.set_rate_share(1.0)  # one process: INKIT_RATE_LIMIT is its own, whatever scope
        if not processor.completed:
            processor.subscribe()
        processor.run()
        progress.close(processor.tally)
    finally:
        _close_within(consumer, CLOSE_TIMEOUT_S)
        if producer is not None:
            producer.flush(10)
        if ledger is not None:
            ledger.close()
        if sender is not None:
            sender.stop()
    tally = processor.tally
    print(
        summary(
            tally,
            topic=settings.dlq_topic,
            group=group,
            filters=options.selection.describe(),
            dry_run=dry_run,
            completed=processor.completed,
            limit=options.limit,
        ),
        file=out,
        flush=True,
    )
    if not processor.completed:
        return EXIT_INTERRUPTED
    return EXIT_FAILED_AGAIN if tally.failed else 0


def _load_ledger(
    settings: Settings,
    producer: Any,
    group: str,
    metrics: Metrics,
    dry_run: bool,
    on_error: Any,
) -> SentLedger | None:
    if not settings.ledger_enabled:
        return None
    ledger_type = _ReadOnlyLedger if dry_run else SentLedger
    ledger = ledger_type(
        producer=producer,
        consumer_factory=lambda: Consumer(scanner_config(settings, on_error)),
        topic=settings.ledger_topic,
        window_s=settings.dedupe_window_s,
        metrics=metrics,
        group_id=group,
    )
    try:
        ledger.load()
    except StartupError as exc:
        if not dry_run:
            raise
        logger.warning("dry run without the sent-ledger (%s): already-sent is not counted", exc)
        return None
    logger.info("sent-ledger %s: %d events remembered", settings.ledger_topic, ledger.size)
    return ledger


def _install_signal_handlers(processor: RedriveProcessor) -> list[int]:
    """First SIGTERM/SIGINT: finish what flies, commit, stop (resumable). Second: stop now."""
    signals: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals.append(signum)
        name = signal.Signals(signum).name
        if len(signals) > 1:
            logger.warning("received %s again: stopping at once", name)
            processor.abort()
            return
        logger.warning("received %s: finishing what is in flight, committing, stopping", name)
        processor.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return signals
