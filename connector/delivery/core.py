"""The state the processor's parts share, declared once.

``Processor`` (processor.py) is assembled from parts that each read alone: intake (a fetched
record becomes a job), results (a finished job becomes a done offset or a dead letter),
rebalance (assign, revoke, lost, drain) and flow (backpressure and the lag gauge). They share
the attributes below, set in ``Processor.__init__``, and call each other only through the
methods declared here."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from connector.delivery.breaker import CircuitBreaker
from connector.delivery.commits import Committer
from connector.delivery.handoff import Handoffs
from connector.delivery.offsets import OffsetTracker
from connector.delivery.ordering import KeyedScheduler
from connector.delivery.partition import PartitionState, TPKey
from connector.errors import ConsumerError, RecordError
from connector.inkit.retry import Backoff
from connector.inkit.sender import Job, Result, Sender
from connector.kafka.dlq import DeadLetterQueue
from connector.kafka.dlq_recovery import DeadLetterScans
from connector.kafka.ledger import SentLedger
from connector.models import InkitRequest, Outcome, SegmentMessage, Skip
from connector.observability.metrics import Metrics

POLL_BATCH = 500


class Decoder(Protocol):
    def decode(self, value: bytes | None) -> SegmentMessage: ...


class Mapper(Protocol):
    def map(self, event: SegmentMessage) -> InkitRequest | Skip: ...


class ProcessorCore:
    """Attributes and cross-part methods of ``Processor``; see processor.py for the contract."""

    _consumer: Any
    _decoder: Decoder
    _mapper: Mapper
    _sender: Sender
    _dlq: DeadLetterQueue | None
    _metrics: Metrics
    _topic: str
    _max_in_flight: int
    _max_buffered: int
    _drain_timeout_s: float
    _scanner: DeadLetterScans | None
    _clock: Callable[[], float]
    _wall_clock: Callable[[], float]
    _tracker: OffsetTracker
    _scheduler: KeyedScheduler[Job]
    _partitions: dict[TPKey, PartitionState]
    _handoffs: Handoffs
    _committer: Committer
    _paused: set[TPKey]
    _dlq_retry: deque[tuple[float, Any, RecordError, int]]
    _in_flight: int
    _awaiting_ledger: int  # delivered, their sent-ledger record not yet acknowledged
    _consumed: Any  # records_consumed's child for the topic (counted once per poll)
    _finished_counters: dict[tuple[Outcome, str], Any]  # records' children, by label values
    _idle: bool  # the last poll found nothing while requests flew: run() waits for a result
    _unfinished: int
    _generation: int
    _last_lag: float
    _stopping: bool
    _aborted: bool
    _in_drain: bool
    _fatal: ConsumerError | None
    _backoff: Backoff
    _breaker: CircuitBreaker
    _ledger: SentLedger | None
    _intents: bool  # AMBIGUOUS_SEND_POLICY=dead-letter with the ledger: an intent before a send
    _max_event_age_s: float | None
    heartbeat: float
    running: bool

    def fail(self, error: ConsumerError) -> None:
        raise NotImplementedError

    def _dispatch(self, *, gated: bool = True, only: set[TPKey] | None = None) -> None:
        raise NotImplementedError

    def _handle_results(self, results: Iterable[Result]) -> None:
        raise NotImplementedError

    def _finish(
        self, topic: str, partition: int, offset: int, outcome: Outcome, reason: str
    ) -> None:
        raise NotImplementedError

    def _dead_letter(self, record: Any, error: RecordError, generation: int | None = None) -> None:
        raise NotImplementedError

    def _retry_stalled(self) -> None:
        raise NotImplementedError

    def _hold(self, record: Any, error: RecordError) -> bool:
        raise NotImplementedError

    def _breaker_delivered(self, record: Any) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def _retry_dead_letters(self) -> None:
        raise NotImplementedError

    def _flow_control(self) -> None:
        raise NotImplementedError

    def _request_scans(self, since: dict[TPKey, int]) -> None:
        raise NotImplementedError

    def _drop_scan(self, state: PartitionState) -> None:
        raise NotImplementedError
