"""Results: a finished send becomes a done offset, or a dead letter whose ack finishes it."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from connector.delivery.core import ProcessorCore
from connector.errors import RecordError
from connector.inkit.sender import Job, Result, ResultKind
from connector.models import Outcome

logger = logging.getLogger(__name__)

DLQ_RETRY_S = 1.0
DLQ_FENCE_RETRY_S = 0.05


class Results(ProcessorCore):
    """Hands results back to the offset tracker and the dead-letter topic (consume thread)."""

    def _handle_results(self, results: Iterable[Result]) -> None:
        last_delivery = None  # the gauge is set once per batch, to its latest delivery
        observe = self._metrics.end_to_end_latency.observe
        for result in results:
            job = result.job
            self._in_flight -= 1
            if job.intent and result.kind is not ResultKind.DELIVERED:
                self._close_intent(job)
            ref = job.ref
            state = self._partitions.get((ref.topic, ref.partition))
            if state is None or state.generation != job.generation:
                continue  # abandoned on revoke: its partition is someone else's now
            state.flying.discard(job)
            self._scheduler.done(job)
            if result.kind is ResultKind.DELIVERED:
                self._delivered(job)
                if last_delivery is None or result.finished_at > last_delivery:
                    last_delivery = result.finished_at
                self._breaker_delivered(job.record)
                if job.timestamp_s is not None:
                    observe(max(0.0, result.finished_at - job.timestamp_s))
            elif result.kind is ResultKind.FAILED and result.error is not None:
                self._dead_letter(job.record, result.error)
            # CANCELLED: neither done nor dead-lettered; the offset stays uncommitted.
        if last_delivery is not None:
            self._metrics.last_delivery.set(last_delivery)

    def _close_intent(self, job: Job) -> None:
        """A send under AMBIGUOUS_SEND_POLICY=dead-letter ended without a 2xx: when nothing can
        have reached Inkit, the intent is resolved (a tombstone); otherwise it stays open, so
        the event is never sent again without a person's say (ambiguous_send, redrive)."""
        if self._ledger is not None and job.identity is not None and not job.unanswered:
            self._ledger.resolve(job.identity)

    def _delivered(self, job: Job) -> None:
        """A 2xx finishes the record, or with the sent-ledger, its ledger record's ack does: an
        offset is never committed past a delivery the ledger does not remember yet."""
        ref = job.ref
        if self._ledger is None or job.identity is None:
            self._finish(ref.topic, ref.partition, ref.offset, Outcome.DELIVERED, "ok")
            return
        generation = job.generation
        self._awaiting_ledger += 1

        def recorded() -> None:
            self._awaiting_ledger -= 1
            state = self._partitions.get((ref.topic, ref.partition))
            if state is not None and state.generation == generation:
                self._finish(ref.topic, ref.partition, ref.offset, Outcome.DELIVERED, "ok")

        self._ledger.record(job.identity, ref, recorded)

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
        child = self._finished_counters.get((outcome, reason))
        if child is None:  # labels() costs a lookup under a lock: once per (outcome, reason)
            child = self._metrics.records.labels(outcome.value, reason)
            self._finished_counters[(outcome, reason)] = child
        child.inc()

    def _dead_letter(self, record: Any, error: RecordError, generation: int | None = None) -> None:
        key = (record.topic(), record.partition())
        state = self._partitions.get(key)
        if state is None:
            return
        gen = state.generation if generation is None else generation
        # A first attempt (not a retried produce) may be held by the circuit breaker instead.
        if generation is None and self._hold(record, error):
            return
        fence = not state.has_commit and self._committer.enabled and not self._in_drain
        if generation is None and not fence and not self._in_drain:
            # Earlier copies of this partition still wait (the fence below, a failed produce):
            # this one goes behind them, so that one user's dead letters keep their order in
            # the dead-letter topic, which `redrive` sends them in (found by its test: copies
            # written as the fence lifted overtook those it held).
            fence = any(
                r.topic() == key[0] and r.partition() == key[1] for _, r, *_ in self._dlq_retry
            )
        if self._dlq is not None and fence:
            # A partition no commit was ever made for: a next owner would have no "since" to
            # look for this copy from, and would write it again after a crash or a loss (found
            # by the simulation, test_simulation.py). Commit first (a commit carries since),
            # then write the copy. Not in a drain: commit results are not served there, and a
            # drain must end (the copy is then at least once, as before).
            self._committer.due_now()
            self._dlq_retry.append((self._clock() + DLQ_FENCE_RETRY_S, record, error, gen))
            return

        fields = {
            "topic": record.topic(),
            "partition": record.partition(),
            "offset": record.offset(),
            "reason": error.reason,
        }
        logger.log(
            logging.ERROR if self._dlq is not None else logging.WARNING,
            "%s %s[%s]@%s: %s (%s)",
            "dead-lettering" if self._dlq is not None else "dry run: would dead-letter",
            record.topic(),
            record.partition(),
            record.offset(),
            error.reason,
            error.detail,
            extra=fields,
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

        # When it was produced, until a commit covers it: a commit's "since" is never later
        # (commits.py), so a next owner's scan finds it however long ago it was.
        state.dead_letters_at.setdefault(record.offset(), int(self._wall_clock() * 1000))
        self._dlq.send(record, error, done)

    def _retry_dead_letters(self) -> None:
        now = self._clock()
        again = []
        for _ in range(len(self._dlq_retry)):
            due, record, error, gen = self._dlq_retry[0]
            if due > now:
                break
            self._dlq_retry.popleft()
            before = len(self._dlq_retry)
            self._dead_letter(record, error, gen)
            if len(self._dlq_retry) > before:  # held again (the fence): it went to the back
                again.append(self._dlq_retry.pop())
        # Back at the front, in their order: appended behind copies held later, they would be
        # written after them, and one user's dead letters out of order (seen: 4-7 before 0-3).
        self._dlq_retry.extendleft(reversed(again))
