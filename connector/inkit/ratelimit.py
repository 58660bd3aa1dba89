"""TokenBucket: an asyncio rate limiter for INKIT_RATE_LIMIT (requests per second)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """Allows ``rate`` acquisitions per second on average, with bursts up to ``burst``.

    ``acquire`` waits (without blocking the event loop) until a token is free. Waiters are
    served in arrival order because each reserves its slot before sleeping.
    """

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._interval = 1.0 / rate
        self._burst_s = (burst if burst is not None else max(1.0, rate / 10)) * self._interval
        self._clock = clock
        self._next_free = clock()

    def reserve(self) -> float:
        """Take the next slot; return how long the caller must wait for it (seconds)."""
        now = self._clock()
        # Unused capacity accumulates only up to the burst size.
        slot = max(self._next_free, now - self._burst_s + self._interval)
        self._next_free = slot + self._interval
        return max(0.0, slot - now)

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
