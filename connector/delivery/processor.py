"""Processor: the consume loop. poll -> decode -> map -> schedule per user -> send -> mark done ->
commit the contiguous watermark; backpressure by pausing partitions; drain on revoke and stop.

Its collaborators: the Committer (commits.py: offset commits and the cap on uncommitted
records), Handoffs (handoff.py: partitions whose previous owner still drains them), the
DeadLetterScanner (dlq_recovery.py: dead letters a previous owner already wrote)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Protocol

from confluent_kafka import KafkaException, TopicPartition

from connector.delivery.commits import Committer
from connector.delivery.handoff import CommittedReader, Handoffs
from connector.delivery.offsets import CommitMetadata, OffsetTracker, decode_metadata
from connector.delivery.ordering import KeyedScheduler
from connector.delivery.partition import PartitionState, TPKey
from connector.errors import ConsumerError, DeadLetterScanError, RecordError, RegistryUnavailable
from connector.inkit.retry import Backoff
from connector.inkit.sender import Job, Result, ResultKind, Sender
from connector.kafka.dlq import DeadLetterQueue
from connector.kafka.dlq_recovery import DeadLetterScanner
from connector.models import InkitRequest, Outcome, RecordRef, SegmentMessage, Skip
from connector.observability.metrics import Metrics

logger = logging.getLogger(__name__)

POLL_BATCH = 500
IDLE_POLL_S = 0.1
BUSY_POLL_S = 0.005
IN_FLIGHT_POLL_S = 0.001
LAG_REFRESH_S = 2.0
DLQ_RETRY_S = 1.0
# Reasons of records that are skipped rather than dead-lettered: deliberate, not broken.
SKIP_DECODE_REASONS = frozenset({"tombstone"})


class Decoder(Protocol):
    def decode(self, value: bytes | None) -> SegmentMessage: ...


class Mapper(Protocol):
    def map(self, event: SegmentMessage) -> InkitRequest | Skip: ...


class Processor:
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
        scanner: DeadLetterScanner | None = None,
        committed_reader: CommittedReader | None = None,
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
        self._clock = clock
        self._wall_clock = wall_clock
        self._tracker = OffsetTracker()
        self._scheduler: KeyedScheduler[Job] = KeyedScheduler()
        self._partitions: dict[TPKey, PartitionState] = {}
        self._handoffs = Handoffs(
            consumer=consumer,
            partitions=self._partitions,
            reader=committed_reader,
            rescan=self._rescan_dead_letters,
            clock=clock,
            wall_clock=wall_clock,
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
        self._paused: set[TPKey] = set()
        self._dlq_retry: deque[tuple[float, Any, RecordError, int]] = deque()
        self._in_flight = 0
        self._unfinished = 0
        self._generation = 0
        self._last_lag = 0.0
        self._stopping = False
        self._fatal: ConsumerError | None = None
        self._backoff = Backoff(base_s=1.0, max_s=30.0)
        self.heartbeat = clock()
        self.running = False
        metrics.records_consumed.labels(topic)  # so rate() starts from 0, not from absent

    # -- public ------------------------------------------------------------------------------
    def request_stop(self) -> None:
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
            outcome: list[bool] = []
            worker = threading.Thread(
                target=self._commit_into, args=(outcome,), name="final-commit", daemon=True
            )
            worker.start()
            while worker.is_alive() and self._clock() < deadline:
                self.heartbeat = self._clock()
                self._consumer.consume(POLL_BATCH, 0.1)  # serves the rebalance; records dropped
                self._flow_control()  # partitions assigned meanwhile are paused too
            if outcome and outcome[0]:
                return
            if self._clock() >= deadline:
                break
        if self._partitions:
            logger.warning(
                "final offset commit did not land before the drain deadline; the next owner "
                "re-reads from the last committed offset"
            )

    def _commit_into(self, outcome: list[bool]) -> None:
        outcome.append(self._committer.commit(force=True))

    # -- the loop ----------------------------------------------------------------------------
    def _step(self) -> None:
        self.heartbeat = self._clock()
        self._handle_results(self._sender.drain_results())
        self._retry_stalled()
        self._retry_dead_letters()
        self._handoffs.check()
        self._dispatch()
        self._flow_control()
        # Never fetch more than the buffer has room for (at least 1: consume() also serves
        # rebalances and heartbeats), so the caps hold to within one record.
        room = max(1, min(POLL_BATCH, self._max_buffered - self._unfinished))
        records = self._consumer.consume(room, self._poll_timeout())
        for record in records:
            error = record.error()
            if error is not None:
                self._on_record_error(error)
                continue
            self._ingest(record)
        if self._dlq is not None:
            self._dlq.poll(0)
        self._dispatch()
        self._committer.commit(early=self._committer.early_due(self._in_flight))
        self._refresh_lag()

    def _poll_timeout(self) -> float:
        """How long consume() may block. A result waiting to be handled (which may release a
        user's next event) must not wait behind a fetch, so the busier the loop, the shorter."""
        if self._sender.wakeup.is_set():
            return 0.0
        if self._in_flight:
            return IN_FLIGHT_POLL_S
        if self._unfinished:
            return BUSY_POLL_S
        return IDLE_POLL_S

    def _ingest(self, record: Any) -> None:
        key = (record.topic(), record.partition())
        state = self._partitions.get(key)
        if state is None:
            return  # a record of a partition we no longer own: its new owner reads it
        if state.handoff_until_ms is not None:
            return  # read again from the previous owner's final commit (see handoff.py)
        offset = record.offset()
        if state.last_offset is not None and offset <= state.last_offset:
            # librdkafka fetched a range again (seen after a pause/resume during a rebalance):
            # those records are already tracked here; processing them twice would send twice.
            if not state.refetch_logged:
                state.refetch_logged = True
                logger.warning(
                    "%s[%s]: offset %d fetched again; ignoring records already read",
                    key[0],
                    key[1],
                    offset,
                )
            return
        state.last_offset = offset
        self._tracker.track(key[0], key[1], offset, int(self._wall_clock() * 1000))
        state.unfinished += 1
        self._unfinished += 1
        self._metrics.records_consumed.labels(key[0]).inc()
        if offset in state.already_done:
            state.already_done.discard(offset)
            self._finish(key[0], key[1], offset, Outcome.SKIPPED, "already_done")
            return
        if offset in state.already_dead_lettered:
            state.already_dead_lettered.discard(offset)
            self._finish(key[0], key[1], offset, Outcome.SKIPPED, "already_dead_lettered")
            return
        if state.stalled:
            state.stalled.append(record)  # keep order behind the record waiting for the registry
            return
        self._process(record, state)

    def _process(self, record: Any, state: PartitionState) -> None:
        try:
            event = self._decoder.decode(record.value())
            request = self._mapper.map(event)
        except RegistryUnavailable:
            state.stall_attempts += 1
            state.stalled.appendleft(record)
            state.stalled_until = self._clock() + self._backoff.delay(state.stall_attempts)
            self._metrics.retries.labels("registry_unavailable").inc()
            logger.warning(
                "schema registry unavailable; partition %s[%s] waits and retries",
                state.topic,
                state.partition,
            )
            return
        except RecordError as exc:
            if exc.reason in SKIP_DECODE_REASONS:
                self._finish(
                    record.topic(), record.partition(), record.offset(), Outcome.SKIPPED, exc.reason
                )
            else:
                self._dead_letter(record, exc)
            return
        if isinstance(request, Skip):
            self._finish(
                record.topic(), record.partition(), record.offset(), Outcome.SKIPPED, request.reason
            )
            return
        user = record.key() or event.user_id or event.anonymous_id or ""
        ts_type, ts_ms = record.timestamp()
        job = Job(
            ref=RecordRef(record.topic(), record.partition(), record.offset()),
            order_key=(state.topic, state.partition, user),
            request=request,
            record=record,
            timestamp_s=ts_ms / 1000.0 if ts_type and ts_ms > 0 else None,
            generation=state.generation,
        )
        self._scheduler.add(job)

    def _retry_stalled(self) -> None:
        now = self._clock()
        for state in self._partitions.values():
            if not state.stalled or now < state.stalled_until:
                continue
            while state.stalled:
                record = state.stalled.popleft()
                before = len(state.stalled)
                self._process(record, state)
                if len(state.stalled) > before:
                    break  # still unavailable: the record went back to the head
            else:
                state.stall_attempts = 0

    def _dispatch(self, *, gated: bool = True) -> None:
        """Send what may go: within INKIT_MAX_IN_FLIGHT and, unless draining (the records were
        read and must finish now), within MAX_UNCOMMITTED_RECORDS: a crash re-sends at most
        what no landed commit covers, so that is capped, also while commits cannot land."""
        room = self._max_in_flight - self._in_flight
        if gated:
            waiting = self._scheduler.has_ready()
            room = min(room, self._committer.send_room(self._in_flight, waiting))
        if room <= 0 or not self._scheduler.has_ready() or self._sender.auth_blocked:
            return
        jobs = self._scheduler.take(room)
        for job in jobs:
            self._partitions[(job.ref.topic, job.ref.partition)].flying.add(job)
        self._in_flight += len(jobs)
        self._sender.submit(jobs)

    def _handle_results(self, results: Iterable[Result]) -> None:
        for result in results:
            job = result.job
            self._in_flight -= 1
            key = (job.ref.topic, job.ref.partition)
            state = self._partitions.get(key)
            if state is None or state.generation != job.generation:
                continue  # abandoned on revoke: its partition is someone else's now
            state.flying.discard(job)
            self._scheduler.done(job)
            if result.kind is ResultKind.DELIVERED:
                self._finish(
                    job.ref.topic, job.ref.partition, job.ref.offset, Outcome.DELIVERED, "ok"
                )
                self._metrics.last_delivery.set(result.finished_at)
                if job.timestamp_s is not None:
                    latency = max(0.0, result.finished_at - job.timestamp_s)
                    self._metrics.end_to_end_latency.observe(latency)
            elif result.kind is ResultKind.FAILED and result.error is not None:
                self._dead_letter(job.record, result.error)
            # CANCELLED: neither done nor dead-lettered; the offset stays uncommitted.

    def _finish(
        self, topic: str, partition: int, offset: int, outcome: Outcome, reason: str
    ) -> None:
        state = self._partitions.get((topic, partition))
        if state is None:
            return
        self._tracker.mark_done(topic, partition, offset)
        state.unfinished -= 1
        self._unfinished -= 1
        self._committer.finished(state)
        self._metrics.records.labels(outcome.value, reason).inc()

    def _dead_letter(self, record: Any, error: RecordError, generation: int | None = None) -> None:
        key = (record.topic(), record.partition())
        state = self._partitions.get(key)
        if state is None:
            return
        gen = state.generation if generation is None else generation
        logger.error(
            "dead-lettering %s[%s]@%s: %s (%s)",
            record.topic(),
            record.partition(),
            record.offset(),
            error.reason,
            error.detail,
        )
        if self._dlq is None:
            # Dry run: nothing is written and nothing committed, but the record is finished,
            # so the run keeps reading and stops promptly.
            self._finish(key[0], key[1], record.offset(), Outcome.DEAD_LETTERED, error.reason)
            return

        def done(ok: bool) -> None:
            current = self._partitions.get(key)
            if current is None or current.generation != gen:
                return
            if ok:
                self._finish(key[0], key[1], record.offset(), Outcome.DEAD_LETTERED, error.reason)
            else:
                self._dlq_retry.append((self._clock() + DLQ_RETRY_S, record, error, gen))

        self._dlq.send(record, error, done)

    def _retry_dead_letters(self) -> None:
        now = self._clock()
        for _ in range(len(self._dlq_retry)):
            due, record, error, gen = self._dlq_retry[0]
            if due > now:
                break
            self._dlq_retry.popleft()
            self._dead_letter(record, error, gen)

    # -- backpressure ------------------------------------------------------------------------
    def _flow_control(self) -> None:
        if not self._partitions:
            return
        if self._stopping or self._sender.auth_blocked:
            wanted = set(self._partitions)
        else:
            per_partition = max(64, self._max_buffered // len(self._partitions))
            full = self._unfinished >= self._max_buffered
            wanted = {
                key
                for key, state in self._partitions.items()
                if full or state.stalled or state.unfinished >= per_partition
            }
        # A partition paused before anything was consumed from it resumes from its committed
        # offset (or auto.offset.reset), not from where the fetcher was (librdkafka), which
        # re-reads records; so it stays unpaused until its first record: one record at most.
        wanted = {key for key in wanted if self._partitions[key].last_offset is not None}
        # Waiting for a previous owner's final commit: paused (a seek follows anyway).
        wanted |= {k for k, s in self._partitions.items() if s.handoff_until_ms is not None}
        to_pause = wanted - self._paused
        to_resume = self._paused - wanted
        if to_pause:
            self._consumer.pause([TopicPartition(t, p) for t, p in to_pause])
        if to_resume:
            self._consumer.resume([TopicPartition(t, p) for t, p in to_resume])
        self._paused = wanted
        self._metrics.paused_partitions.set(len(wanted))
        self._metrics.ready.set(0 if self._stopping or self._sender.auth_blocked else 1)
        self._metrics.buffered.set(self._unfinished)
        self._metrics.uncommitted.set(self._committer.uncommitted + self._in_flight)

    # -- commits and lag ---------------------------------------------------------------------
    def on_commit(self, error: Any, partitions: list[Any]) -> None:
        """Result of a commit (librdkafka's on_commit callback, served by consume())."""
        self._committer.on_commit(error, partitions)

    def _refresh_lag(self, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last_lag < LAG_REFRESH_S:
            return
        self._last_lag = now
        for (topic, partition), state in self._partitions.items():
            try:
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except KafkaException:
                continue
            if high is None or high < 0:
                continue
            last = self._committer.committed_offset((topic, partition))
            committed = last if last is not None else state.initial_committed
            base = committed if committed is not None else low
            if base is None or base < 0:
                continue
            self._metrics.consumer_lag.labels(topic, str(partition)).set(max(0, high - base))

    # -- rebalances ----------------------------------------------------------------------------
    def _guard(
        self, callback: Callable[[Any, list[Any]], None]
    ) -> Callable[[Any, list[Any]], None]:
        """librdkafka swallows exceptions raised in rebalance callbacks; log them and stop."""

        def guarded(consumer: Any, partitions: list[Any]) -> None:
            try:
                callback(consumer, partitions)
            except Exception as exc:
                logger.exception("rebalance callback failed")
                self.fail(ConsumerError(f"rebalance callback failed: {type(exc).__name__}"))

        return guarded

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        if not partitions:
            return
        self._metrics.rebalances.labels("assigned").inc()
        self._generation += 1
        committed: dict[TPKey, tuple[int | None, set[int]]] = {}
        since: dict[TPKey, int] = {}
        handoff: dict[TPKey, int] = {}
        try:
            for tp in consumer.committed(partitions, timeout=10):
                offset = tp.offset if tp.offset >= 0 else None
                key = (tp.topic, tp.partition)
                if offset is None:
                    committed[key] = (None, set())
                    continue
                metadata = decode_metadata(offset, tp.metadata)
                committed[key] = (offset, set(metadata.done))
                if (metadata.draining_until_ms or 0) > self._wall_ms():
                    handoff[key] = metadata.draining_until_ms or 0
                    continue  # read again when the handoff ends
                if metadata.since_ms is not None:
                    since[key] = metadata.since_ms
        except KafkaException as exc:
            logger.warning("could not read committed offsets at assignment: %s", exc.args[0])
        dead_lettered = self._dead_letters_since(since, committed)
        for tp in partitions:
            key = (tp.topic, tp.partition)
            offset, done = committed.get(key, (None, set()))
            self._partitions[key] = PartitionState(
                tp.topic,
                tp.partition,
                self._generation,
                initial_committed=offset,
                already_done=done,
                already_dead_lettered=dead_lettered.get(key, set()),
                handoff_until_ms=handoff.get(key),
            )
            if key in handoff:
                logger.info(
                    "%s[%s]: its previous owner is still draining it; waiting for its final "
                    "commit (at most %.0fs)",
                    key[0],
                    key[1],
                    max(0.0, (handoff[key] - self._wall_ms()) / 1000),
                )
        self._metrics.assigned_partitions.set(len(self._partitions))
        logger.info("partitions assigned: %s", _describe(partitions))

    def _dead_letters_since(
        self, since: dict[TPKey, int], committed: dict[TPKey, tuple[int | None, set[int]]]
    ) -> dict[TPKey, set[int]]:
        """Offsets of the newly assigned partitions whose dead-letter copy a previous owner
        wrote after its last commit (a crash came between the ack and the commit)."""
        if self._scanner is None or self._dlq is None or not since:
            return {}
        watermarks = {key: committed[key][0] for key in since}
        started = self._clock()
        try:
            found = self._scanner.written_since(
                min(since.values()), {k: v for k, v in watermarks.items() if v is not None}
            )
        except DeadLetterScanError as exc:
            self._metrics.dead_letter_scans.labels("failed").inc()
            logger.warning(
                "could not read the dead-letter topic back (%s); a dead letter written just "
                "before the previous owner stopped may be written again",
                exc.detail,
            )
            return {}
        self._metrics.dead_letter_scans.labels("ok").inc()
        # Those the commit metadata already lists as done are skipped anyway.
        found = {k: v - committed[k][1] for k, v in found.items() if v - committed[k][1]}
        if found:
            # Only after an unclean stop (a crash between a dead-letter ack and the commit).
            logger.warning(
                "dead letters already written by a previous owner, not written again: %s "
                "(scan took %.2fs)",
                ", ".join(f"{t}[{p}]: {len(o)}" for (t, p), o in sorted(found.items())),
                self._clock() - started,
            )
        return found

    def _rescan_dead_letters(self, key: TPKey, offset: int, metadata: CommitMetadata) -> set[int]:
        """After a handover: the dead letters of ``key`` written since ``metadata.since_ms``."""
        if metadata.since_ms is None:
            return set()
        found = self._dead_letters_since(
            {key: metadata.since_ms}, {key: (offset, set(metadata.done))}
        )
        return found.get(key, set())

    def _wall_ms(self) -> int:
        return int(self._wall_clock() * 1000)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        if not keys:
            return
        self._metrics.rebalances.labels("revoked").inc()
        logger.info("partitions revoked: %s; draining", _describe(partitions))
        self._committer.announce_drain(keys)
        self._drain(keys, reason="revoke")
        self._committer.commit_revoked(keys)
        self._forget(keys)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self._metrics.rebalances.labels("lost").inc()
        logger.warning("partitions lost: %s; abandoning their work", _describe(partitions))
        self._forget(keys)  # they belong to someone else already: never commit them

    def _drain(self, keys: list[TPKey], *, reason: str) -> None:
        """Let the buffered work of ``keys`` finish (dispatching what waits, awaiting what flies,
        flushing dead-letter copies) until done or the drain deadline passes."""
        wanted = set(keys) & set(self._partitions)
        if not wanted:
            return
        deadline = self._clock() + self._drain_timeout_s
        started = self._clock()

        def outstanding() -> int:
            return sum(self._partitions[k].unfinished for k in wanted if k in self._partitions)

        while outstanding() and self._clock() < deadline:
            self.heartbeat = self._clock()
            self._handle_results(self._sender.drain_results())
            self._retry_stalled()
            self._retry_dead_letters()
            self._dispatch(gated=False)
            if self._dlq is not None:
                self._dlq.poll(0)
            self._sender.wakeup.wait(0.02)
        left = outstanding()
        logger.info(
            "drain (%s) of %d partition(s) ended after %.1fs with %d record(s) unfinished",
            reason,
            len(wanted),
            self._clock() - started,
            left,
        )

    def _forget(self, keys: list[TPKey]) -> None:
        gone = set(keys)

        def in_gone(order_key: Hashable) -> bool:
            return isinstance(order_key, tuple) and (order_key[0], order_key[1]) in gone

        self._scheduler.remove_where(in_gone)
        for key in gone:
            state = self._partitions.pop(key, None)
            if state is not None:
                self._unfinished -= state.unfinished
                # Still in flight after the drain deadline: abandon them. Inkit may still
                # accept some; the partition's next owner re-sends them (a possible duplicate).
                self._sender.cancel(list(state.flying))
            self._committer.forget(key, state)
            self._paused.discard(key)
            for gauge in (self._metrics.consumer_lag, self._metrics.committed_offset):
                with contextlib.suppress(KeyError):
                    gauge.remove(key[0], str(key[1]))
        self._tracker.forget(gone)
        self._dlq_retry = deque(
            item for item in self._dlq_retry if (item[1].topic(), item[1].partition()) not in gone
        )
        self._metrics.assigned_partitions.set(len(self._partitions))

    def _on_record_error(self, error: Any) -> None:
        if error.fatal():
            self.fail(ConsumerError(f"fatal Kafka error: {error.str()}"))
            return
        logger.warning("Kafka consumer error: %s", error.str())


def _describe(partitions: list[Any]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions[:20]) + (
        f" (+{len(partitions) - 20} more)" if len(partitions) > 20 else ""
    )
