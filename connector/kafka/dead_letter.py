"""A dead-letter record read back: what its headers say (why and when it failed, where it came
from, how often it was redriven), the record as `redrive` hands it to the Processor, and the
headers of its next copy when it fails again.

The headers are the ones kafka/dlq.py writes. A copy written again by `redrive` keeps the first
copy's origin (``inkit.original.*``), carries its new reason and failure time, and counts
``inkit.redrive.attempt`` up (1 on the first redrive); the record's own headers follow, as in
every copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from connector.errors import RecordError
from connector.kafka.dlq import HEADER_PREFIX, dead_letter_headers
from connector.kafka.dlq_recovery import GROUP_HEADER

ATTEMPT_HEADER = "inkit.redrive.attempt"
UNKNOWN_REASON = "unknown"

Headers = Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What a dead-letter copy's headers say. Fields the copy does not carry are None (a record
    not written by the connector has none of them; its reason is ``unknown``)."""

    reason: str = UNKNOWN_REASON
    failed_at_ms: int | None = None
    original_topic: str | None = None
    original_partition: int | None = None
    original_offset: int | None = None
    original_timestamp_ms: int | None = None
    group: str | None = None
    attempt: int = 0


def read_dead_letter(headers: Headers | None) -> DeadLetter:
    """Parse a dead-letter copy's ``inkit.*`` headers; a malformed value counts as absent."""
    values: dict[str, str] = {}
    for key, value in headers or ():
        if key.startswith(HEADER_PREFIX) and value is not None and key not in values:
            # The first one wins: ours come first, the original record's own headers after.
            values[key] = value.decode("utf-8", "replace")
    return DeadLetter(
        reason=values.get("inkit.error.reason") or UNKNOWN_REASON,
        failed_at_ms=_int(values.get("inkit.failed.at")),
        original_topic=values.get("inkit.original.topic"),
        original_partition=_int(values.get("inkit.original.partition")),
        original_offset=_int(values.get("inkit.original.offset")),
        original_timestamp_ms=_int(values.get("inkit.original.timestamp")),
        group=values.get(GROUP_HEADER),
        attempt=max(0, _int(values.get(ATTEMPT_HEADER)) or 0),
    )


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


class DeadLetterRecord:
    """A record of the dead-letter topic as `redrive` processes it: its own topic, partition and
    offset (the redrive's consumer group commits those), its key and value (the original
    bytes), and the original event's timestamp, so that MAX_EVENT_AGE_HOURS and the end-to-end
    latency measure the event, not the copy. ``dead_letter`` holds its parsed headers."""

    __slots__ = ("_record", "dead_letter")

    def __init__(self, record: Any, dead_letter: DeadLetter) -> None:
        self._record = record
        self.dead_letter = dead_letter

    def topic(self) -> str:
        return str(self._record.topic())

    def partition(self) -> int:
        return int(self._record.partition())

    def offset(self) -> int:
        return int(self._record.offset())

    def key(self) -> bytes | None:
        key: bytes | None = self._record.key()
        return key

    def value(self) -> bytes | None:
        value: bytes | None = self._record.value()
        return value

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        headers: list[tuple[str, bytes | None]] | None = self._record.headers()
        return headers

    def error(self) -> Any:
        return self._record.error()

    def timestamp(self) -> tuple[int, int]:
        ts_ms = self.dead_letter.original_timestamp_ms
        if ts_ms is not None and ts_ms > 0:
            return (1, ts_ms)  # TIMESTAMP_CREATE_TIME: the original record's own time
        ts: tuple[int, int] = self._record.timestamp()
        return ts


class _AsOriginal:
    """A dead-letter record seen as the original record it copies: the origin headers of the
    first copy, and only the record's own (non-``inkit.``) headers."""

    def __init__(self, record: Any) -> None:
        self._record = record
        self._dead_letter: DeadLetter = record.dead_letter

    def topic(self) -> str:
        return self._dead_letter.original_topic or str(self._record.topic())

    def partition(self) -> int:
        partition = self._dead_letter.original_partition
        return int(self._record.partition()) if partition is None else partition

    def offset(self) -> int:
        offset = self._dead_letter.original_offset
        return int(self._record.offset()) if offset is None else offset

    def timestamp(self) -> tuple[int, int]:
        ts: tuple[int, int] = self._record.timestamp()
        return ts

    def headers(self) -> list[tuple[str, bytes]] | None:
        own = self._record.headers()
        if own is None:
            return None
        return [(k, v) for k, v in own if not k.startswith(HEADER_PREFIX) and v is not None]


def redrive_headers(record: Any, error: RecordError, group_id: str = "") -> list[tuple[str, bytes]]:
    """Headers of the copy of a redriven record that failed again (``record`` is a
    DeadLetterRecord, or the dead-letter queue's value-less view of one)."""
    headers = dead_letter_headers(_AsOriginal(record), error, group_id)
    attempt = record.dead_letter.attempt + 1
    # Right after our own headers, before the record's own ones.
    own = len(headers) - len(_AsOriginal(record).headers() or [])
    headers.insert(own, (ATTEMPT_HEADER, str(attempt).encode()))
    return headers
