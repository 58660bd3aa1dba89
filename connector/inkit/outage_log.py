"""Inkit outages and throttles in the log: a WARNING when one starts, a reminder at most once per
REMINDER_S while it lasts, and a line when it ends. Retries themselves log at DEBUG only, so
without this a 50 s run of 5xx would leave no trace at INFO."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

REMINDER_S = 60.0


class OutageLog:
    """Turns per-attempt results into outage lines (runs on the sender's loop thread only).

    Contract: ``failed`` after every retryable failure (5xx, 408, timeout, connection error, 429),
    ``answered`` after any other answer from Inkit (2xx or a 4xx: Inkit is up). Never blocks."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, reminder_s: float = REMINDER_S
    ) -> None:
        self._clock = clock
        self._reminder_s = reminder_s
        self._since: float | None = None
        self._last_line = 0.0
        self._failures = 0
        self._reason = ""

    @property
    def active(self) -> bool:
        return self._since is not None

    def failed(self, reason: str, status: int | None, fields: dict[str, Any]) -> None:
        now = self._clock()
        self._failures += 1
        what = "throttles requests" if reason == "rate_limited" else "unavailable"
        shown = f"HTTP {status}" if status else reason
        if self._since is None:
            self._since, self._last_line, self._reason = now, now, reason
            logger.warning(
                "Inkit %s (%s, %s): retrying with backoff; records wait, nothing is dead-lettered "
                "before INKIT_RETRY_MAX_SECONDS",
                what,
                reason,
                shown,
                extra={**fields, "reason": reason},
            )
            return
        if now - self._last_line >= self._reminder_s:
            self._last_line = now
            logger.warning(
                "Inkit still %s (%s, %s) after %.0fs: %d failed attempts so far",
                what,
                reason,
                shown,
                now - self._since,
                self._failures,
                extra={"reason": reason},
            )

    def answered(self) -> None:
        if self._since is None:
            return
        logger.warning(
            "Inkit answers again after %.0fs of %s (%d failed attempts): delivery resumed",
            self._clock() - self._since,
            self._reason,
            self._failures,
            extra={"reason": self._reason},
        )
        self._since, self._failures = None, 0
