"""Circuit breaker for systemic failure: when recent records fail for one reason at a high rate
(a wrong KAFKA_VALUE_FORMAT, a wrong default template, an Inkit API change), delivery pauses
instead of dead-lettering the whole topic.

Pure logic: no clock, no I/O, no Kafka. The processor (delivery/held.py) feeds it outcomes and
holds the records it refuses to dead-letter; the breaker only counts and decides."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# Outcomes remembered: the window the rate is measured over.
DEFAULT_WINDOW_RECORDS = 100
# Failures of one reason among them that trip it; a normal trickle of bad records (a few per
# hundred, or a burst of a dozen from one broken producer) stays below.
DEFAULT_MIN_FAILURES = 20
# ... and the share of the remembered outcomes those failures must be.
DEFAULT_FAILURE_RATIO = 0.5
# Probe the first held record after this long, doubling up to the maximum.
PROBE_FIRST_S = 5.0
PROBE_MAX_S = 60.0

_OK = ""  # a success in the window


class BreakerAction(StrEnum):
    """What a tripped breaker does: pause delivery (default) or dead-letter anyway."""

    PAUSE = "pause"
    DEAD_LETTER = "dead-letter"


@dataclass(frozen=True, slots=True)
class Held:
    """A record the breaker kept from the dead-letter topic, with what it failed with."""

    record: Any
    error: Any  # the RecordError
    generation: int


class CircuitBreaker:
    """Counts the last ``window`` finished records and opens when one failure reason dominates.

    Contract: every method runs on the consume thread and never blocks. ``failed`` returns True
    when the record must be held (the breaker is open and pauses), False when it may be
    dead-lettered. Held records stay in order; ``close`` hands them back for processing.
    """

    def __init__(
        self,
        *,
        min_failures: int = DEFAULT_MIN_FAILURES,
        failure_ratio: float = DEFAULT_FAILURE_RATIO,
        window: int = DEFAULT_WINDOW_RECORDS,
        action: BreakerAction = BreakerAction.PAUSE,
        enabled: bool = True,
    ) -> None:
        if min_failures < 1 or not 0.0 < failure_ratio <= 1.0 or window < min_failures:
            raise ValueError("need 1 <= min_failures <= window and 0 < failure_ratio <= 1")
        self._min_failures = min_failures
        self._ratio = failure_ratio
        self._window: deque[str] = deque(maxlen=window)
        self._counts: Counter[str] = Counter()
        self.action = action
        self.enabled = enabled
        self.reason: str | None = None  # set while open
        self.would_trip: str | None = None  # BreakerAction.DEAD_LETTER: the reason it saw
        self._held: deque[Held] = deque()
        self._probe: Held | None = None
        self._probe_attempts = 0

    @property
    def is_open(self) -> bool:
        return self.reason is not None

    @property
    def held(self) -> int:
        return len(self._held) + (self._probe is not None)

    def first_held(self) -> Held | None:
        return self._probe or (self._held[0] if self._held else None)

    def succeeded(self) -> None:
        """A record was delivered: it dilutes the failure rate. (Skips do not count: a topic
        of mostly skipped calls must not hide that every Identify fails.)"""
        if not self.enabled:
            return
        self._remember(_OK)

    def failed(self, reason: str, held: Held) -> bool:
        """A record is about to be dead-lettered for ``reason``: True means hold it instead."""
        if not self.enabled:
            return False
        if self._probe is not None and held.record is self._probe.record:
            self._probe = None
            self._held.appendleft(held)  # the probe failed again: back at the head, in order
            return True
        if self.is_open:
            self._held.append(held)
            return True
        self._remember(reason)
        if not self._tripped(reason):
            return False
        if self.action is BreakerAction.DEAD_LETTER:
            self.would_trip = reason
            return False
        self.reason = reason
        self._held.append(held)
        return True

    def next_probe(self, is_current: Callable[[Held], bool]) -> tuple[Held | None, float]:
        """The first held record to try again (None while a probe is still out, or when nothing
        current is left), and the delay before the next probe. Records of partitions this
        process lost (``is_current`` False) are dropped: their new owner reads them again."""
        delay = min(PROBE_FIRST_S * 2**self._probe_attempts, PROBE_MAX_S)
        self._probe_attempts += 1
        if self._probe is not None and not is_current(self._probe):
            self._probe = None
        if self._probe is not None:
            return None, delay
        while self._held and not is_current(self._held[0]):
            self._held.popleft()
        if self._held:
            self._probe = self._held.popleft()
        return self._probe, delay

    def idle(self) -> bool:
        """Open with nothing held or probing: every held record went to another owner."""
        return self.is_open and self._probe is None and not self._held

    def is_probe(self, record: Any) -> bool:
        return self._probe is not None and self._probe.record is record

    def close(self) -> list[Held]:
        """The probe succeeded (or nothing is left to probe): close and release what is held,
        oldest first, with a fresh window so the released records are judged anew."""
        self.reason = None
        self._probe = None
        self._probe_attempts = 0
        self._window.clear()
        self._counts.clear()
        released = list(self._held)
        self._held.clear()
        return released

    def _remember(self, outcome: str) -> None:
        if len(self._window) == self._window.maxlen:
            oldest = self._window.popleft()
            self._counts[oldest] -= 1
        self._window.append(outcome)
        self._counts[outcome] += 1

    def _tripped(self, reason: str) -> bool:
        failures = self._counts[reason]
        return failures >= self._min_failures and failures >= self._ratio * len(self._window)
