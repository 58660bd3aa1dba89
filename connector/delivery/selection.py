"""Which dead letters a `redrive` takes: its filters (reason, when the copy was written, the
original record's partition and offset, the consumer group that wrote it) and how the command
line spells them. Pure: no Kafka, no clock except the ``now`` it is given."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from connector.kafka.dead_letter import DeadLetter

NOT_SELECTED = "not_selected"

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RANGE = re.compile(r"^(\d+)(?:-(\d*))?$")


@dataclass(frozen=True, slots=True)
class Selection:
    """The filters of one redrive; an empty filter lets everything through.

    ``group``: only copies this consumer group wrote (header ``inkit.consumer.group``; copies
    without the header, from older versions, count as its own), so that another group sharing
    the dead-letter topic keeps its dead letters. Times are epoch milliseconds, ``since``
    inclusive and ``until`` exclusive; the offset range is inclusive (``None``: open ended)."""

    reasons: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None
    partitions: frozenset[int] = frozenset()
    offsets: tuple[int, int | None] | None = None
    group: str | None = None

    def admits(self, letter: DeadLetter) -> bool:
        if self.group is not None and letter.group is not None and letter.group != self.group:
            return False
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.since_ms is not None or self.until_ms is not None:
            failed = letter.failed_at_ms
            if failed is None:
                return False  # a time filter cannot vouch for a copy without a time
            if self.since_ms is not None and failed < self.since_ms:
                return False
            if self.until_ms is not None and failed >= self.until_ms:
                return False
        if self.partitions and letter.original_partition not in self.partitions:
            return False
        if self.offsets is not None:
            low, high = self.offsets
            offset = letter.original_offset
            if offset is None or offset < low or (high is not None and offset > high):
                return False
        return True

    def describe(self) -> str:
        """The filters in words, for the log and the summary (no record content)."""
        parts = []
        if self.reasons:
            parts.append("reason " + " or ".join(sorted(self.reasons)))
        if self.since_ms is not None:
            parts.append(f"dead-lettered since {_iso(self.since_ms)}")
        if self.until_ms is not None:
            parts.append(f"dead-lettered before {_iso(self.until_ms)}")
        if self.partitions:
            parts.append("original partition " + ", ".join(map(str, sorted(self.partitions))))
        if self.offsets is not None:
            low, high = self.offsets
            parts.append(f"original offset {low}" + ("" if high == low else f"-{high or ''}"))
        return "; ".join(parts) or "every dead letter"


def parse_time(text: str, now_s: float) -> int:
    """``--since`` / ``--until``: ISO-8601 (``2026-12-03T10:00:00Z``; without a zone, UTC) or
    a duration ago (``90m``, ``2h``, ``1d``). Returns epoch milliseconds; ValueError if neither."""
    text = text.strip()
    ago = _AGO.match(text)
    if ago:
        return int((now_s - float(ago.group(1)) * _UNIT_S[ago.group(2)]) * 1000)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use ISO-8601 (2026-12-03T10:00:00Z) or a duration ago "
            "(30m, 2h, 1d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_offsets(text: str) -> tuple[int, int | None]:
    """``--offset``: ``N`` (that offset), ``N-M`` (inclusive) or ``N-`` (from N on)."""
    match = _RANGE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not an offset: use N, N-M or N-")
    low = int(match.group(1))
    if match.group(2) is None:
        return low, low
    high = int(match.group(2)) if match.group(2) else None
    if high is not None and high < low:
        raise ValueError(f"{text!r}: the range ends before it starts")
    return low, high


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
