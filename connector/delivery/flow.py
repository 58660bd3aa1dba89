"""Flow: backpressure by pausing partitions, readiness and buffer gauges, and consumer lag."""

from __future__ import annotations

import contextlib

from confluent_kafka import KafkaException, TopicPartition

from connector.delivery.core import ProcessorCore
from connector.delivery.partition import PartitionState

LAG_REFRESH_S = 2.0


class FlowControl(ProcessorCore):
    """Pauses and resumes partitions and refreshes the gauges (consume thread)."""

    def _flow_control(self) -> None:
        if not self._partitions:
            return
        if self._stopping or self._sender.auth_blocked or self._breaker.is_open:
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
        # Waiting for a previous owner's final commit or a dead-letter scan: paused (a seek
        # follows anyway).
        wanted |= {k for k, s in self._partitions.items() if s.held}
        to_pause = wanted - self._paused
        to_resume = self._paused - wanted
        if to_pause:
            self._consumer.pause([TopicPartition(t, p) for t, p in to_pause])
        if to_resume:
            self._consumer.resume([TopicPartition(t, p) for t, p in to_resume])
        self._paused = wanted
        self._metrics.paused_partitions.set(len(wanted))
        blocked = self._stopping or self._sender.auth_blocked or self._breaker.is_open
        self._metrics.ready.set(0 if blocked else 1)
        self._metrics.buffered.set(self._unfinished)
        self._metrics.uncommitted.set(
            self._committer.uncommitted + self._in_flight + self._awaiting_ledger
        )

    def _refresh_lag(self, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last_lag < LAG_REFRESH_S:
            return
        self._last_lag = now
        if not force:  # a refresh on each landed commit updates the lag only (it is cheap)
            self._refresh_oldest()
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

    def _refresh_oldest(self) -> None:
        """Per partition: the age of the oldest unfinished record and what holds it, so that a
        stall is never silent (issue #13). One series per partition: the holder label moves."""
        now_s = self._wall_clock()
        for (topic, partition), state in self._partitions.items():
            holder, read_at_s = self._oldest(state)
            age = 0.0 if read_at_s is None else max(0.0, now_s - read_at_s)
            if state.holder is not None and state.holder != holder:
                with contextlib.suppress(KeyError):
                    self._metrics.oldest_unfinished_age.remove(topic, str(partition), state.holder)
            state.holder = holder
            self._metrics.oldest_unfinished_age.labels(topic, str(partition), holder).set(age)

    def _oldest(self, state: PartitionState) -> tuple[str, float | None]:
        """What holds ``state``'s oldest unfinished record, and when it was read (wall s)."""
        if state.handoff_until_ms is not None:
            return "handoff", state.assigned_at_s
        if state.scan is not None:
            return "dlq_scan", state.assigned_at_s
        read_ms = self._tracker.oldest_read_ms(state.topic, state.partition)
        offset = self._tracker.committable(state.topic, state.partition)
        if read_ms is None or offset is None:
            return "none", None
        read_s = read_ms / 1000
        auth = self._sender.auth_blocked
        for job in state.flying:
            if job.ref.offset == offset:
                return ("auth" if auth else "retrying" if job.attempts > 1 else "in_flight"), read_s
        if state.stalled and state.stalled[0].offset() == offset:
            return "registry", read_s
        if any(
            item[1].offset() == offset and (item[1].topic(), item[1].partition()) == state.key
            for item in self._dlq_retry
        ):
            return "dead_letter_retry", read_s
        if self._scheduler.any_waiting(
            lambda j: (
                j.ref.offset == offset
                and j.ref.partition == state.partition
                and j.ref.topic == state.topic
            )
        ):
            return ("auth" if auth else "backpressure"), read_s
        return "dead_letter", read_s  # its dead-letter copy waits for Kafka's ack
