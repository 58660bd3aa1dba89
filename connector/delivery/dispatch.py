"""Dispatch: which waiting jobs go to the sender now, within INKIT_MAX_IN_FLIGHT, the cap on
uncommitted records (with its one-head-per-partition exception), the auth gate's single probe,
the sent-ledger's already-sent filter and, under AMBIGUOUS_SEND_POLICY=dead-letter, the open
intents of sends a previous owner started, and the intent each send waits for."""

from __future__ import annotations

from functools import partial

from connector.delivery.core import ProcessorCore
from connector.delivery.partition import PartitionState, TPKey
from connector.errors import AmbiguousSend
from connector.inkit.sender import Job
from connector.models import AmbiguousPolicy, Outcome


class Dispatch(ProcessorCore):
    """Moves jobs from the per-user scheduler to the sender (consume thread)."""

    def _dispatch(self, *, gated: bool = True, only: set[TPKey] | None = None) -> None:
        """Send what may go: within INKIT_MAX_IN_FLIGHT and, unless draining (the records were
        read and must finish now), within MAX_UNCOMMITTED_RECORDS: a crash re-sends at most
        what no landed commit covers, so that is capped, also while commits cannot land.
        ``only``: a drain sends only the partitions it drains (the others stay under the cap
        and leave it the in-flight slots)."""
        room = self._max_in_flight - self._in_flight
        heads_only = False
        if gated:
            waiting = self._scheduler.has_ready()
            # Deliveries waiting for their ledger ack are not finished yet, and a crash would
            # send them again: they count against the cap like requests in flight.
            pending = self._in_flight + self._awaiting_ledger
            capped = self._committer.send_room(pending, waiting)
            if capped > 0:
                room = min(room, capped)
            elif not self._committer.landing:
                return  # commits fail: hold at the cap (a head could not be covered either)
            else:
                # At the cap, a partition's oldest unfinished record still goes: it is what
                # moves the watermark, and only a commit past it can uncover the cap (found by
                # the simulation: finished records a full metadata text cannot cover held the
                # cap closed while the records below them waited for it). At most one per
                # partition past the cap until a commit past it lands, so a crash re-sends at
                # most MAX_UNCOMMITTED_RECORDS plus one per partition.
                heads_only = True
        if self._sender.auth_blocked:
            # Inkit refused the key: only a probe goes out, and only when nobody probes.
            room = min(room, 1) if self._sender.needs_probe else 0
        if room <= 0 or not self._scheduler.has_ready():
            return
        if heads_only:
            if not any(self._head_may_go(state) for state in self._partitions.values()):
                return  # the usual case at the cap: each head flies already (no queue scan)
            jobs = self._scheduler.take(room, self._is_head)
            for job in jobs:
                self._partitions[(job.ref.topic, job.ref.partition)].cap_head = job.ref.offset
        elif only is None:
            jobs = self._scheduler.take(room)
        else:
            jobs = self._scheduler.take(room, lambda j: (j.ref.topic, j.ref.partition) in only)
        if self._ledger is not None:
            jobs = self._drop_already_sent(jobs)
        for job in jobs:
            self._partitions[(job.ref.topic, job.ref.partition)].flying.add(job)
        self._in_flight += len(jobs)
        if self._intents:
            self._send_after_intents(jobs)
        else:
            self._sender.submit(jobs)

    def _send_after_intents(self, jobs: list[Job]) -> None:
        """Each job goes to the sender once its intent is acknowledged: a send whose intent
        could be lost in a crash would be invisible to the next owner, which would send it
        again. The wait (a Kafka round trip per send, acks=all) is the policy's price; bench/
        measures it. Until then the job counts as in flight (the caps hold)."""
        ledger, sender = self._ledger, self._sender
        for job in jobs:
            if ledger is None or job.identity is None:
                sender.submit([job])
                continue
            job.intent = True
            ledger.intend(job.identity, job.ref, partial(sender.submit, [job]))

    def _head_may_go(self, state: PartitionState) -> bool:
        """``state``'s oldest unfinished record may go past the cap, if it waits to be sent."""
        head = self._tracker.committable(state.topic, state.partition)
        if head is None or any(job.ref.offset == head for job in state.flying):
            return False
        if state.cap_head is None:
            return True
        return state.landed_offset is not None and state.landed_offset > state.cap_head

    def _is_head(self, job: Job) -> bool:
        """``job`` is its partition's oldest unfinished record, and may go past the cap: no
        earlier head of its partition went past it without a commit landing beyond it since."""
        ref = job.ref
        state = self._partitions.get((ref.topic, ref.partition))
        if state is None or self._tracker.committable(ref.topic, ref.partition) != ref.offset:
            return False
        return self._head_may_go(state)

    def _drop_already_sent(self, jobs: list[Job]) -> list[Job]:
        """Jobs about to be sent whose event the sent-ledger remembers are skipped instead.
        Looked up at dispatch, not at intake: one user's events go one at a time, so a second
        copy of an event is looked up only after the first one's ledger record was written.
        Under AMBIGUOUS_SEND_POLICY=dead-letter, an event with an open intent (a send started
        before a crash or a lost partition, outcome unknown) is dead-lettered as
        ``ambiguous_send`` instead of sent."""
        ledger = self._ledger
        keep = []
        for job in jobs:
            if ledger is None or job.identity is None:
                keep.append(job)
            elif ledger.already_sent(job.identity):
                self._scheduler.done(job)
                ref = job.ref
                self._finish(ref.topic, ref.partition, ref.offset, Outcome.SKIPPED, "already_sent")
            elif self._intents and ledger.open_intent(job.identity):
                self._scheduler.done(job)
                policy = AmbiguousPolicy.DEAD_LETTER.value
                self._metrics.ambiguous_sends.labels(policy, "open_intent").inc()
                if self._breaker.is_probe(job.record):
                    # The circuit breaker chose an ambiguous send as its probe: it can never be
                    # sent, so it cannot tell whether Inkit recovered. Release what is held; it
                    # is judged anew (found by the chaos run: the breaker stayed open for good).
                    self._release()
                # Never held by the breaker: after a crash these come in a burst (up to the
                # cap), which is not a systemic failure, and a held one would be probed again.
                generation = self._partitions[(job.ref.topic, job.ref.partition)].generation
                self._dead_letter(job.record, AmbiguousSend("open_intent"), generation)
            else:
                keep.append(job)
        return keep
