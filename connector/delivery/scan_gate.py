"""ScanGate: a partition whose previous owner may have dead-lettered records after its last
commit is held (its records dropped, the partition paused) until the dead-letter scan says which,
then read again from the committed offset.

The scan runs on the scanner's own thread (kafka/dlq_recovery.py), so the consume loop keeps
polling, serving rebalances and beating /healthz meanwhile. A scan that fails is tried again
every DLQ_SCAN_RETRY_S; while a partition waits, the stall gauge names it (holder "dlq_scan").
After DLQ_SCAN_PATIENCE_S without an answer the partition is read anyway: a copy the previous
owner wrote just before it stopped may then be written a second time (at least once, never a
loss), which is logged and counted (dead_letter_scans{result="failed"}).
"""

from __future__ import annotations

import logging
from concurrent.futures import CancelledError

from confluent_kafka import KafkaException, TopicPartition

from connector.delivery.core import ProcessorCore
from connector.delivery.offsets import CommitMetadata
from connector.delivery.partition import PartitionState, PendingScan, TPKey
from connector.errors import DeadLetterScanError

logger = logging.getLogger(__name__)

DLQ_SCAN_RETRY_S = 5.0
DLQ_SCAN_PATIENCE_S = 120.0


class ScanGate(ProcessorCore):
    """Requests dead-letter scans and opens the partitions they hold (consume thread)."""

    def _request_scans(self, since: dict[TPKey, int]) -> None:
        """Hold the assigned partitions of ``since`` (their commit's "since") until a scan,
        one for all of them, answers."""
        if self._scanner is None or self._dlq is None:
            return
        now = self._clock()
        states = []
        for key, since_ms in since.items():
            state = self._partitions.get(key)
            if state is None or state.initial_committed is None:
                continue
            state.scan = PendingScan(
                since_ms, state.initial_committed, frozenset(state.already_done), now
            )
            states.append(state)
        self._submit_scan(states)

    def _rescan_dead_letters(self, state: PartitionState, metadata: CommitMetadata) -> None:
        """After a handover (handoff.py): hold ``state`` until the dead letters written since
        the final commit's ``since`` are known."""
        if metadata.since_ms is not None:
            self._request_scans({state.key: metadata.since_ms})

    def _submit_scan(self, states: list[PartitionState]) -> None:
        if not states or self._scanner is None:
            return
        scans = [(s, s.scan) for s in states if s.scan is not None]
        future = self._scanner.submit(
            min(scan.since_ms for _, scan in scans),
            {state.key: scan.committed for state, scan in scans},
        )
        for _, scan in scans:
            scan.future = future

    def _check_scans(self) -> None:
        """Open the partitions whose scan answered; retry or give up on failed ones."""
        now = self._clock()
        due: list[PartitionState] = []
        counted: set[int] = set()
        for state in list(self._partitions.values()):
            scan = state.scan
            if scan is None:
                continue
            if scan.found is None:
                if scan.future is None:
                    if now >= scan.retry_at_s:
                        due.append(state)
                    continue
                if not scan.future.done():
                    continue
                future, first = scan.future, id(scan.future) not in counted
                counted.add(id(future))
                try:
                    result = future.result()
                except (DeadLetterScanError, CancelledError) as exc:
                    self._scan_failed(state, scan, exc, first)
                    continue
                if first:
                    self._metrics.dead_letter_scans.labels("ok").inc()
                scan.found = result.get(state.key, set()) - scan.done
            self._open(state, scan, scan.found)
        self._submit_scan(due)

    def _scan_failed(
        self, state: PartitionState, scan: PendingScan, exc: BaseException, first: bool
    ) -> None:
        if first:
            self._metrics.dead_letter_scans.labels("failed").inc()
            logger.warning(
                "could not read the dead-letter topic back (%s); trying again in %.0fs",
                exc if isinstance(exc, DeadLetterScanError) else "cancelled",
                DLQ_SCAN_RETRY_S,
            )
        if self._clock() - scan.started_s < DLQ_SCAN_PATIENCE_S:
            scan.future = None
            scan.retry_at_s = self._clock() + DLQ_SCAN_RETRY_S
            return
        logger.warning(
            "%s[%s]: no dead-letter scan answered within %.0fs; reading it anyway (a dead "
            "letter written just before the previous owner stopped may be written again)",
            state.topic,
            state.partition,
            DLQ_SCAN_PATIENCE_S,
        )
        self._open(state, scan, set())

    def _open(self, state: PartitionState, scan: PendingScan, found: set[int]) -> None:
        # What was fetched while held was dropped: read again from the commit.
        try:
            self._consumer.seek(TopicPartition(state.topic, state.partition, scan.committed))
        except KafkaException as exc:
            # The fetcher may not have started yet: try again next time round.
            logger.debug("%s[%s]: seek not possible yet: %s", state.topic, state.partition, exc)
            scan.found = found
            return
        state.scan = None
        state.last_offset = None
        state.already_dead_lettered = found
        if found:
            # Only after an unclean stop (a crash between a dead-letter ack and the commit).
            logger.warning(
                "dead letters already written by a previous owner, not written again: "
                "%s[%s]: %d (scan took %.2fs)",
                state.topic,
                state.partition,
                len(found),
                self._clock() - scan.started_s,
            )

    def _drop_scan(self, state: PartitionState) -> None:
        """``state`` was revoked or lost: a scan nobody else waits for is cancelled (if it has
        not started; a running one ends and is ignored)."""
        scan = state.scan
        state.scan = None
        if scan is None or scan.future is None:
            return
        if not any(
            other.scan is not None and other.scan.future is scan.future
            for other in self._partitions.values()
            if other is not state
        ):
            scan.future.cancel()
