"""The circuit breaker's hold on delivery: records it refuses to dead-letter wait here, uncommitted,
while every partition is paused (like the auth gate); a probe re-tries the first of them."""

from __future__ import annotations

import logging
from typing import Any

from connector.delivery.breaker import BreakerAction, CircuitBreaker, Held
from connector.delivery.core import ProcessorCore
from connector.errors import RecordError
from connector.events.sniff import describe, guess_format

logger = logging.getLogger(__name__)


class BreakerGate(ProcessorCore):
    """Feeds the breaker and holds what it refuses (consume thread)."""

    _breaker: CircuitBreaker
    _probe_at: float

    @property
    def breaker_open(self) -> bool:
        return self._breaker.is_open

    def _hold(self, record: Any, error: RecordError) -> bool:
        """True when ``record`` is held instead of dead-lettered."""
        state = self._partitions.get((record.topic(), record.partition()))
        if state is None:
            return False
        was_open, warned = self._breaker.is_open, self._breaker.would_trip
        held = self._breaker.failed(error.reason, Held(record, error, state.generation))
        if held and not was_open:
            self._probe_at = self._clock() + 5.0
            self._metrics.breaker_trips.labels(error.reason).inc()
            logger.error(
                "circuit breaker open: most recent records fail with %s; delivery paused, "
                "%s[%s]@%s and what follows are held (not dead-lettered, not committed). "
                "Likely cause: %s. Fix it and restart, or set BREAKER_ACTION=dead-letter.",
                error.reason,
                record.topic(),
                record.partition(),
                record.offset(),
                likely_cause(error, record.value()),
                extra=_fields(record, error.reason),
            )
        elif not held and warned is None and self._breaker.would_trip is not None:
            logger.error(
                "circuit breaker would open (most recent records fail with %s) but does not "
                "pause (BREAKER_ACTION=dead-letter, or --dry-run): dead-lettering on. "
                "Likely cause: %s.",
                error.reason,
                likely_cause(error, record.value()),
                extra=_fields(record, error.reason),
            )
        self._metrics.breaker_open.set(1 if self._breaker.is_open else 0)
        return held

    def _breaker_delivered(self, record: Any) -> None:
        """A record was delivered; if it was the probe, the cause is gone: release the rest."""
        if self._breaker.is_probe(record):
            logger.warning("circuit breaker closed: a held record was delivered; resuming")
            self._release()
        else:
            self._breaker.succeeded()

    def _probe_held(self) -> None:
        if not self._breaker.is_open or self._clock() < self._probe_at:
            return
        probe, delay = self._breaker.next_probe(self._is_current)
        self._probe_at = self._clock() + delay
        if self._breaker.idle():
            logger.warning("circuit breaker closed: its held records belong to another owner now")
            self._release()
            return
        if probe is not None:
            state = self._partitions[(probe.record.topic(), probe.record.partition())]
            self._process(probe.record, state)  # fails again (held again) or is scheduled

    def _release(self) -> None:
        for held in self._breaker.close():
            if self._is_current(held):
                key = (held.record.topic(), held.record.partition())
                self._process(held.record, self._partitions[key])
        self._metrics.breaker_open.set(0)

    def _is_current(self, held: Held) -> bool:
        state = self._partitions.get((held.record.topic(), held.record.partition()))
        return state is not None and state.generation == held.generation

    def _process(self, record: Any, state: Any) -> None:
        raise NotImplementedError


def likely_cause(error: RecordError, value: bytes | None) -> str:
    """One phrase naming what most likely makes every record fail this way (no record content)."""
    if error.error_class == "decode":
        return f"the records look like {describe(guess_format(value))}: check KAFKA_VALUE_FORMAT"
    if error.error_class == "mapping":
        return "the events lack what the mapping needs: check INKIT_TEMPLATE_ID and INKIT_MODE"
    if error.reason == "http_404":
        return "Inkit answers 404: check INKIT_API_URL and INKIT_MODE"
    if error.reason.startswith("http_4"):
        return (
            f"Inkit rejects every request ({error.reason}): check INKIT_TEMPLATE_ID, INKIT_MODE "
            "and INKIT_DESTINATIONS"
        )
    return f"a systemic {error.reason}"


def _fields(record: Any, reason: str) -> dict[str, Any]:
    return {
        "topic": record.topic(),
        "partition": record.partition(),
        "offset": record.offset(),
        "reason": reason,
    }


__all__ = ["BreakerAction", "BreakerGate", "likely_cause"]
