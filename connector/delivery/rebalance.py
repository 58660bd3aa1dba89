"""Rebalances: what happens on assign (committed offsets, handoff, dead letters already written),
on revoke (drain, final commit, forget) and on lost (forget, never commit)."""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from connector.delivery.commits import HANDOFF_MARGIN_S
from connector.delivery.core import ProcessorCore
from connector.delivery.handoff import handoff_wait_s
from connector.delivery.offsets import decode_metadata
from connector.delivery.partition import PartitionState, TPKey
from connector.errors import ConsumerError

logger = logging.getLogger(__name__)


class Rebalancing(ProcessorCore):
    """librdkafka's rebalance callbacks, served by consume() on the consume thread."""

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
        handoff: dict[TPKey, tuple[int, float]] = {}  # announced deadline, our wait
        try:
            for tp in consumer.committed(partitions, timeout=10):
                offset = tp.offset if tp.offset >= 0 else None
                key = (tp.topic, tp.partition)
                if offset is None:
                    committed[key] = (None, set())
                    continue
                metadata = decode_metadata(offset, tp.metadata)
                committed[key] = (offset, set(metadata.done))
                if metadata.draining_until_ms is not None:
                    wait_s = handoff_wait_s(
                        metadata.draining_until_ms,
                        self._wall_ms(),
                        self._drain_timeout_s + HANDOFF_MARGIN_S,
                        announcer=metadata.draining_by,
                    )
                    if wait_s > 0:
                        handoff[key] = (metadata.draining_until_ms, wait_s)
                        continue  # read again when the handoff ends
                if metadata.since_ms is not None:
                    since[key] = metadata.since_ms
        except KafkaException as exc:
            logger.warning("could not read committed offsets at assignment: %s", exc.args[0])
        for tp in partitions:
            key = (tp.topic, tp.partition)
            offset, done = committed.get(key, (None, set()))
            self._partitions[key] = PartitionState(
                tp.topic,
                tp.partition,
                self._generation,
                initial_committed=offset,
                already_done=done,
                handoff_until_ms=handoff[key][0] if key in handoff else None,
                assigned_at_s=self._wall_clock(),
                has_commit=offset is not None,
                landed_offset=offset,
            )
            if key in handoff:
                # Our monotonic clock from here on: the wall clocks were compared once.
                self._partitions[key].handoff_deadline = self._clock() + handoff[key][1]
                logger.info(
                    "%s[%s]: its previous owner is still draining it; waiting for its final "
                    "commit (at most %.0fs)",
                    key[0],
                    key[1],
                    handoff[key][1],
                )
        # Dead letters a previous owner may have written after its last commit: read back on
        # the scanner's thread, never here (a long read here starved /healthz's heartbeat);
        # the partitions wait for the answer (scan_gate.py).
        self._request_scans(since)
        self._metrics.assigned_partitions.set(len(self._partitions))
        logger.info("partitions assigned: %s", _describe(partitions))

    def _wall_ms(self) -> int:
        return int(self._wall_clock() * 1000)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        if not keys:
            return
        self._metrics.rebalances.labels("revoked").inc()
        if not self.running:
            # close() after the loop ended: the shutdown drain and final commit are done, and the
            # sender is stopping. Draining again here would dispatch work to a closing client
            # (and, on that closer thread, race the composition root's teardown): forget only.
            logger.info("partitions revoked at close: %s", _describe(partitions))
            self._forget(keys)
            return
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

        self._in_drain = True
        try:
            self._drain_until(wanted, outstanding, deadline)
        finally:
            self._in_drain = False
        left = outstanding()
        logger.info(
            "drain (%s) of %d partition(s) ended after %.1fs with %d record(s) unfinished",
            reason,
            len(wanted),
            self._clock() - started,
            left,
        )

    def _drain_until(
        self, wanted: set[TPKey], outstanding: Callable[[], int], deadline: float
    ) -> None:
        while outstanding() and self._clock() < deadline and not self._aborted:
            self.heartbeat = self._clock()
            self._handle_results(self._sender.drain_results())
            self._retry_stalled()
            self._retry_dead_letters()
            self._dispatch(gated=False, only=wanted)
            if self._dlq is not None:
                self._dlq.poll(0)
            if self._ledger is not None:
                self._ledger.tick()
            self._sender.wakeup.wait(0.02)

    def _forget(self, keys: list[TPKey]) -> None:
        gone = set(keys)

        def in_gone(order_key: Hashable) -> bool:
            return isinstance(order_key, tuple) and (order_key[0], order_key[1]) in gone

        self._scheduler.remove_where(in_gone)
        # librdkafka keeps the application's pause flag of a partition across unassign and a
        # later assign (reproduced on Kafka 4.1 with confluent-kafka 2.16, both group protocols;
        # tests/integration/test_stalls.py repeats it): a partition we paused and then lost would
        # never be fetched again if it came back to this member. Resume it while it is still
        # ours; its fetcher stops at the unassign that follows this callback anyway.
        held = sorted(gone & self._paused)
        if held:
            try:
                self._consumer.resume([TopicPartition(t, p) for t, p in held])
            except KafkaException as exc:
                logger.warning("could not resume revoked partitions: %s", exc.args[0])
        for key in gone:
            state = self._partitions.pop(key, None)
            if state is not None:
                self._drop_scan(state)
                self._unfinished -= state.unfinished
                # Still in flight after the drain deadline: abandon them. Inkit may still
                # accept some; the partition's next owner re-sends them (a possible duplicate).
                self._sender.cancel(list(state.flying))
            self._committer.forget(key, state)
            self._paused.discard(key)
            for gauge in (self._metrics.consumer_lag, self._metrics.committed_offset):
                with contextlib.suppress(KeyError):
                    gauge.remove(key[0], str(key[1]))
            if state is not None and state.holder is not None:
                with contextlib.suppress(KeyError):
                    self._metrics.oldest_unfinished_age.remove(key[0], str(key[1]), state.holder)
        self._tracker.forget(gone)
        self._dlq_retry = deque(
            item for item in self._dlq_retry if (item[1].topic(), item[1].partition()) not in gone
        )
        if self._ledger is not None:
            self._awaiting_ledger -= self._ledger.forget(
                lambda ref: (ref.topic, ref.partition) not in gone
            )
        self._metrics.assigned_partitions.set(len(self._partitions))


def _describe(partitions: list[Any]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions[:20]) + (
        f" (+{len(partitions) - 20} more)" if len(partitions) > 20 else ""
    )
