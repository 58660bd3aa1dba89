"""Intake: records are fetched, and a fetched record becomes a job, a skip or a dead letter, in
its partition's order.

Fetching (how long the loop may block in consume()), decoding and mapping happen here; a schema
registry outage holds the partition (its records queue behind the first one, which is retried
with backoff) rather than dead-lettering them."""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from connector.delivery.core import ProcessorCore
from connector.delivery.partition import PartitionState
from connector.errors import RecordError, RegistryUnavailable
from connector.inkit.sender import Job
from connector.kafka.ledger import identity_of
from connector.models import Outcome, RecordRef, Skip

logger = logging.getLogger(__name__)

IDLE_POLL_S = 0.1
BUSY_POLL_S = 0.005
# With requests in flight the loop waits on the sender's wakeup event, not inside consume():
# librdkafka's consume() cannot be woken from another thread, so a result would wait out its
# timeout (polling every 1 ms instead cost a step, a consume() and a GIL hand-over per event:
# issue #20). Kafka records that arrive meanwhile wait at most this long.
IN_FLIGHT_WAIT_S = 0.005
# Sent-ledger records waiting for their ack gate commits (and MAX_UNCOMMITTED_RECORDS); their
# acks are served by the producer's poll() in the step, which nothing can wake: look sooner
# (the 1 ms cadence of the loop before issue #20, in consume(), where it costs least).
ACK_WAIT_S = 0.001

# Reasons of records that are skipped rather than dead-lettered: deliberate, not broken.
SKIP_DECODE_REASONS = frozenset({"tombstone"})


class Admission(NamedTuple):
    """What a run does with a fetched record (see ``Intake._admit``)."""

    record: Any  # the record to process (possibly wrapped); None: not read by this run
    skip: str | None = None  # a reason: finished as skipped (committed past), not processed


class Intake(ProcessorCore):
    """Fetches records and turns them into jobs for the scheduler (consume thread)."""

    def _poll(self, room: int) -> list[Any]:
        """Fetch up to ``room`` records. With nothing in flight, block in consume(); with
        requests in flight, take what librdkafka already holds (timeout 0) and, if that is
        nothing, let run() wait for a result after this step: a result (which may release a
        user's next event, and finishes an offset) is handled as soon as it arrives, never
        behind a fetch. While sent-ledger acks are pending, consume() waits ACK_WAIT_S."""
        self._idle = False
        wakeup = self._sender.wakeup
        if wakeup.is_set():
            return list(self._consumer.consume(room, 0.0))
        if not self._in_flight:
            return list(
                self._consumer.consume(room, BUSY_POLL_S if self._unfinished else IDLE_POLL_S)
            )
        if self._awaiting_ledger:
            # Sent-ledger acks (served by the producer's poll in the step) gate commits, and
            # nothing wakes the loop for them: look again within ACK_WAIT_S, blocking in C
            # (measured: a Python Event wait per 1 ms step cost 6-8 % more CPU per event).
            return list(self._consumer.consume(room, ACK_WAIT_S))
        records = list(self._consumer.consume(room, 0.0))
        self._idle = not records  # run() waits for a result before the next step
        return records

    def _ingest(self, record: Any) -> int:
        """Take ``record`` in; 1 if it counts as consumed (the caller counts a poll's records
        in one metric update), 0 if it is not ours to process."""
        key = (record.topic(), record.partition())
        state = self._partitions.get(key)
        if state is None:
            return 0  # a record of a partition we no longer own: its new owner reads it
        if state.held:
            return 0  # read again from the commit once released (handoff.py, scan_gate.py)
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
            return 0
        record, skip = self._admit(record)
        if record is None:
            return 0  # not for this run: never tracked, so no commit passes it
        state.last_offset = offset
        self._tracker.track(key[0], key[1], offset, int(self._wall_clock() * 1000))
        state.unfinished += 1
        self._unfinished += 1
        if skip is not None:
            self._finish(key[0], key[1], offset, Outcome.SKIPPED, skip)
        elif offset in state.already_done:
            state.already_done.discard(offset)
            self._finish(key[0], key[1], offset, Outcome.SKIPPED, "already_done")
        elif offset in state.already_dead_lettered:
            state.already_dead_lettered.discard(offset)
            self._finish(key[0], key[1], offset, Outcome.SKIPPED, "already_dead_lettered")
        elif self._max_event_age_s is not None and self._too_old(record):
            self._finish(key[0], key[1], offset, Outcome.SKIPPED, "too_old")
        elif state.stalled:
            state.stalled.append(record)  # keep order behind the record waiting for the registry
        else:
            self._process(record, state)
        return 1

    def _admit(self, record: Any) -> Admission:
        """The hook of runs that read a topic selectively (`redrive`, delivery/redrive.py):
        `run` takes every record as it is."""
        return Admission(record)

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
        # One user, one order key, whether the producer keyed the record (bytes) or not (the
        # event's userId, a str): b"u1" and "u1" must not become two queues that can reorder.
        raw_key = record.key()
        user = (
            (raw_key.decode("utf-8", "backslashreplace") if raw_key else None)
            or event.user_id
            or event.anonymous_id
            or ""
        )
        ts_type, ts_ms = record.timestamp()
        job = Job(
            ref=RecordRef(record.topic(), record.partition(), record.offset()),
            order_key=(state.topic, state.partition, user),
            request=request,
            record=record,
            timestamp_s=ts_ms / 1000.0 if ts_type and ts_ms > 0 else None,
            generation=state.generation,
            identity=identity_of(event) if self._ledger is not None else None,
        )
        self._scheduler.add(job)

    def _too_old(self, record: Any) -> bool:
        """MAX_EVENT_AGE_HOURS: by the Kafka record timestamp (no timestamp: not too old)."""
        ts_type, ts_ms = record.timestamp()
        if self._max_event_age_s is None or not ts_type or ts_ms <= 0:
            return False
        age_s: float = self._wall_clock() - ts_ms / 1000.0
        return age_s > self._max_event_age_s

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
