"""Processor: the consume loop. poll -> decode -> map -> schedule per user -> send -> mark done ->
commit the contiguous watermark; backpressure by pausing partitions; drain on revoke and stop.

This module holds the loop itself (poll, dispatch, stop, final commit); the class is assembled
from parts that each read alone: intake.py (a record becomes a job), results.py (a result
becomes a done offset or a dead letter), rebalance.py (assign, revoke, lost, drain) and flow.py
(backpressure and lag); core.py declares the state they share. Its collaborators: the
Committer (commits.py: offset commits and the cap on uncommitted records), Handoffs
(handoff.py: partitions whose previous owner still drains them), the DeadLetterScanner
(kafka/dlq_recovery.py: dead letters a previous owner already wrote; scan_gate.py holds the
partitions that wait for it)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException

from connector.delivery.breaker import CircuitBreaker
from connector.delivery.commits import Committer
from connector.delivery.core import POLL_BATCH, Decoder, Mapper
from connector.delivery.dispatch import Dispatch
from connector.delivery.flow import FlowControl
from connector.delivery.handoff import CommittedReader, GroupMembers, Handoffs
from connector.delivery.held import BreakerGate
from connector.delivery.intake import IN_FLIGHT_WAIT_S, Intake
from connector.delivery.offsets import OffsetTracker
from connector.delivery.ordering import KeyedScheduler
from connector.delivery.rebalance import Rebalancing
from connector.delivery.results import Results
from connector.delivery.scan_gate import ScanGate
from connector.errors import ConsumerError
from connector.inkit.retry import Backoff
from connector.inkit.sender import Sender
from connector.kafka.dlq import DeadLetterQueue
from connector.kafka.dlq_recovery import DeadLetterScans
from connector.kafka.ledger import SentLedger
from connector.models import AmbiguousPolicy
from connector.observability.metrics import Metrics

logger = logging.getLogger(__name__)


class Processor(Rebalancing, ScanGate, Results, Intake, Dispatch, FlowControl, BreakerGate):
    """Owns the consumer and everything between a fetched record and its committed offset.

    Contract: ``run`` blocks until ``request_stop`` (from a signal handler) or a fatal Kafka
    error; it then stops fetching, lets buffered work finish within the drain deadline, commits
    and returns. An offset is committed only when the record and every earlier one of its
    partition finished: delivered (2xx), skipped by rule, or acked by the dead-letter topic.
    """

    def __init__(
        self,
        *,
        consumer: Any,
        decoder: Decoder,
        mapper: Mapper,
        sender: Sender,
        dlq: DeadLetterQueue | None,
        metrics: Metrics,
        topic: str,
        max_in_flight: int,
        max_buffered: int,
        drain_timeout_s: float,
        max_uncommitted: int | None = None,
        commit_interval_s: float,
        commit: bool = True,
        scanner: DeadLetterScans | None = None,
        committed_reader: CommittedReader | None = None,
        breaker: CircuitBreaker | None = None,
        group_members: GroupMembers | None = None,
        ledger: SentLedger | None = None,
        max_event_age_s: float | None = None,
        ambiguous_policy: AmbiguousPolicy = AmbiguousPolicy.RESEND,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._consumer = consumer
        self._decoder = decoder
        self._mapper = mapper
        self._sender = sender
        self._dlq = dlq
        self._metrics = metrics
        self._topic = topic
        self._max_in_flight = max_in_flight
        self._max_buffered = max_buffered
        self._drain_timeout_s = drain_timeout_s
        self._commit_interval_s = commit_interval_s
        self._commit_enabled = commit
        self._scanner = scanner
        self._ledger = ledger
        self._intents = ledger is not None and ambiguous_policy is AmbiguousPolicy.DEAD_LETTER
        self._max_event_age_s = max_event_age_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._tracker = OffsetTracker()
        self._scheduler = KeyedScheduler()
        self._partitions = {}
        self._handoffs = Handoffs(
            consumer=consumer,
            partitions=self._partitions,
            reader=committed_reader,
            rescan=self._rescan_dead_letters,
            clock=clock,
            wall_clock=wall_clock,
            members=group_members,
        )
        self._committer = Committer(
            consumer=consumer,
            tracker=self._tracker,
            partitions=self._partitions,
            metrics=metrics,
            interval_s=commit_interval_s,
            max_uncommitted=max_uncommitted or 4 * max_in_flight,
            drain_timeout_s=drain_timeout_s,
            enabled=commit,
            clock=clock,
            wall_clock=wall_clock,
        )
        self._paused = set()
        self._dlq_retry = deque()
        self._in_flight = 0
        self._awaiting_ledger = 0
        self._finished_counters = {}
        self._idle = False  # the last step fetched nothing while requests were in flight
        self._unfinished = 0
        self._generation = 0
        self._last_lag = 0.0
        self._stopping = False
        self._in_drain = False
        self._fatal: ConsumerError | None = None
        self._backoff = Backoff(base_s=1.0, max_s=30.0)
        # No breaker given (unit tests of other parts): one that never trips.
        self._breaker = breaker or CircuitBreaker(enabled=False)
        self._probe_at = 0.0
        self._aborted = False
        self.heartbeat = clock()
        self.running = False
        # Created now so that rate() starts from 0, not from absent; kept, so that the loop
        # counts a poll's records with one inc() rather than a labels() lookup per record.
        self._consumed = metrics.records_consumed.labels(topic)

    # -- public ------------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stopping = True

    def abort(self) -> None:
        """A second signal: stop now. The drain ends at once; what finished is still committed."""
        self._aborted = True
        self._stopping = True

    def fail(self, error: ConsumerError) -> None:
        """Called from librdkafka's error callback for a fatal error: stop as soon as possible."""
        self._fatal = error
        self._stopping = True

    @property
    def auth_blocked(self) -> bool:
        return self._sender.auth_blocked

    def subscribe(self) -> None:
        self._consumer.subscribe(
            [self._topic],
            on_assign=self._guard(self._on_assign),
            on_revoke=self._guard(self._on_revoke),
            on_lost=self._guard(self._on_lost),
        )

    def run(self) -> None:
        self.running = True
        try:
            while not self._stopping:
                self._step()
                if self._idle:
                    self._sender.wakeup.wait(IN_FLIGHT_WAIT_S)
                if not self._sender.alive:
                    # Nothing would ever be sent again: end the process (non-zero) so that
                    # Kubernetes restarts it, rather than stay up with /readyz failing for ever.
                    self.fail(ConsumerError("the Inkit sender thread died; restarting is safe"))
            self._flow_control()  # pauses every partition: nothing new is fetched
            self._committer.announce_drain(list(self._partitions))
            self._drain(list(self._partitions), reason="shutdown")
            self._final_commit()
        finally:
            self.running = False
        if self._fatal is not None:
            raise self._fatal

    def _final_commit(self) -> None:
        """Commit what finished, before the consumer is closed (close() leaves the group before
        its revoke callback runs, so a commit made there is refused with UNKNOWN_MEMBER_ID).

        While the group rebalances, librdkafka holds a synchronous commit behind the member's
        JoinGroup, and the rebalance itself needs this member to keep polling: a commit
        blocking the loop could wait a full request timeout (60 s). So the commit runs on a
        helper thread while this thread polls (every partition paused; whatever arrives is
        dropped, untracked), and a refused commit is retried, within the drain deadline."""
        deadline = self._clock() + self._drain_timeout_s
        while self._partitions and self._fatal is None:
            # Prepared here and answered here: the helper thread only waits on librdkafka, so
            # the committer is never used by two threads (revoke and commit callbacks run in
            # this thread's consume() meanwhile).
            offsets = self._committer.final_offsets()
            if not offsets:
                return
            outcome: list[tuple[Any, Any]] = []
            worker = threading.Thread(
                target=self._commit_into, args=(offsets, outcome), name="final-commit", daemon=True
            )
            worker.start()
            while worker.is_alive() and self._clock() < deadline:
                self.heartbeat = self._clock()
                self._consumer.consume(POLL_BATCH, 0.1)  # serves the rebalance; records dropped
                self._flow_control()  # partitions assigned meanwhile are paused too
            if outcome and self._committer.final_result(offsets, *outcome[0]):
                return
            if self._clock() >= deadline:
                break
        if self._partitions:
            logger.warning(
                "final offset commit did not land before the drain deadline; the next owner "
                "re-reads from the last committed offset"
            )

    def _commit_into(self, offsets: list[Any], outcome: list[tuple[Any, Any]]) -> None:
        try:
            result = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            outcome.append((None, exc.args[0]))
            return
        outcome.append((result, None))

    # -- the loop ----------------------------------------------------------------------------
    def _step(self) -> None:
        self.heartbeat = self._clock()
        self._handle_results(self._sender.drain_results())
        self._retry_stalled()
        self._probe_held()
        self._retry_dead_letters()
        self._handoffs.check()
        self._check_scans()
        self._dispatch()
        self._flow_control()
        # Never fetch more than the buffer has room for (at least 1: consume() also serves
        # rebalances and heartbeats), so the caps hold to within one record.
        room = max(1, min(POLL_BATCH, self._max_buffered - self._unfinished))
        consumed = 0
        for record in self._poll(room):
            error = record.error()
            if error is not None:
                self._on_record_error(error)
                continue
            consumed += self._ingest(record)
        if consumed:
            self._consumed.inc(consumed)  # once per poll, not per record
        if self._dlq is not None:
            self._dlq.poll(0)
        if self._ledger is not None:
            self._ledger.tick()
        self._dispatch()
        self._committer.commit(
            early=self._committer.early_due(self._in_flight + self._awaiting_ledger)
        )
        self._refresh_lag()

    # -- commits -----------------------------------------------------------------------------
    def on_commit(self, error: Any, partitions: list[Any]) -> None:
        """Result of a commit (librdkafka's on_commit callback, served by consume())."""
        self._committer.on_commit(error, partitions)
        if error is None:
            # The lag gauge follows the commit that just landed, not a 2 s old one (the demo's
            # lag column read 401 when all 392 records were delivered: issue #13).
            self._refresh_lag(force=True)

    def _on_record_error(self, error: Any) -> None:
        if error.fatal():
            self.fail(ConsumerError(f"fatal Kafka error: {error.str()}"))
            return
        logger.warning("Kafka consumer error: %s", error.str())
