"""AIMD: the group's request rate when Inkit's limit is unknown (INKIT_RATE_LIMIT_ADAPTIVE)."""

from __future__ import annotations

import time
from collections.abc import Callable

# One 429 takes the rate down by this factor. The rate then saws between this fraction of
# Inkit's limit and the limit itself: 0.8 keeps the average near 90 % of it.
DECREASE_FACTOR = 0.8
# At most one decrease per this long: the 429s of requests already sent at the old rate are not
# news. One second matches the window a per-second limit is counted over.
DECREASE_COOLDOWN_S = 1.0
# A success credits at most this much probing time: after an idle hour the first 2xx must not
# jump the rate by an hour's worth of steps.
MAX_PROBE_CREDIT_S = 1.0


class AdaptiveRate:
    """Additive increase, multiplicative decrease of a request rate (requests per second).

    Starts at ``ceiling`` (INKIT_RATE_LIMIT). ``on_rate_limited`` (a 429) multiplies the rate by
    DECREASE_FACTOR, at most once per DECREASE_COOLDOWN_S, never below ``floor``.
    ``on_delivered`` (a 2xx) adds ``step_per_s`` for every second since the last change, up to
    ``ceiling``: the rate probes upwards only while requests succeed, so an idle connector does not
    climb to the ceiling and burst into a storm of 429s when work arrives. Not thread-safe: the
    sender's loop thread owns it. Both methods return True when the rate changed.
    """

    def __init__(
        self,
        ceiling: float,
        *,
        floor: float,
        step_per_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < floor <= ceiling:
            raise ValueError("need 0 < floor <= ceiling")
        if step_per_s <= 0:
            raise ValueError("step_per_s must be positive")
        self.ceiling = ceiling
        self.floor = floor
        self.step_per_s = step_per_s
        self._clock = clock
        self.rate = ceiling
        self._last_increase = clock()
        self._last_decrease = float("-inf")

    def on_rate_limited(self) -> bool:
        now = self._clock()
        if now - self._last_decrease < DECREASE_COOLDOWN_S:
            return False
        self._last_decrease = now
        self._last_increase = now  # the probe restarts from the new rate
        old = self.rate
        self.rate = max(self.floor, self.rate * DECREASE_FACTOR)
        return self.rate != old

    def on_delivered(self) -> bool:
        now = self._clock()
        elapsed = min(now - self._last_increase, MAX_PROBE_CREDIT_S)
        self._last_increase = now
        if self.rate >= self.ceiling:
            return False
        self.rate = min(self.ceiling, self.rate + self.step_per_s * elapsed)
        return True
