"""Flow: backpressure by pausing partitions, readiness and buffer gauges, and consumer lag."""

from __future__ import annotations

from confluent_kafka import KafkaException, TopicPartition

from connector.delivery.core import ProcessorCore

LAG_REFRESH_S = 2.0


class FlowControl(ProcessorCore):
    """Pauses and resumes partitions and refreshes the gauges (consume thread)."""

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
