"""Rate limits for INKIT_RATE_LIMIT: the TokenBucket that spaces requests, and RateControl, which
sets its rate from the group's rate (fixed or adaptive) and this member's share of it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from connector.inkit.adaptive import AdaptiveRate
from connector.observability.metrics import Metrics
from connector.settings import Settings


class TokenBucket:
    """Allows ``rate`` acquisitions per second on average, with bursts up to ``burst``.

    ``acquire`` waits (without blocking the event loop) until a token is free. Waiters are
    served in arrival order because each reserves its slot before sleeping. ``set_rate`` changes
    the rate for reservations made from then on; a rate of 0 parks every new caller until the
    rate is positive again (a group member without partitions sends nothing). Use it from one
    event loop thread only.
    """

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._burst = burst
        self._clock = clock
        self._next_free = clock()
        self._rate = 0.0
        self._interval = 0.0
        self._burst_s = 0.0
        self._resumed: asyncio.Event | None = None  # made on first need, on the loop's thread
        self.set_rate(rate)

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float) -> None:
        if rate < 0:
            raise ValueError("rate must not be negative")
        self._rate = rate
        if rate > 0:
            self._interval = 1.0 / rate
            burst = self._burst if self._burst is not None else max(1.0, rate / 10)
            self._burst_s = burst * self._interval
            if self._resumed is not None:
                self._resumed.set()
                self._resumed = None

    def reserve(self) -> float | None:
        """Take the next slot; return how long the caller must wait for it (seconds), or None
        when the rate is 0 (no slot to take)."""
        if self._rate <= 0:
            return None
        now = self._clock()
        # Unused capacity accumulates only up to the burst size.
        slot = max(self._next_free, now - self._burst_s + self._interval)
        self._next_free = slot + self._interval
        return max(0.0, slot - now)

    async def acquire(self) -> None:
        while True:
            while (delay := self.reserve()) is None:
                if self._resumed is None:
                    self._resumed = asyncio.Event()
                await self._resumed.wait()
            if delay <= 0:
                return
            slot = self._clock() + delay
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                self.release()
                raise
            # Woken later than a burst past its slot: the process was stalled (CPU, GC), and every
            # waiter whose slot passed meanwhile would go at once, a burst of up to
            # INKIT_MAX_IN_FLIGHT. Take a fresh slot instead: after a stall, as after idle time,
            # at most a burst goes at once.
            if self._clock() - slot <= max(self._burst_s, self._interval):
                return

    def release(self) -> None:
        """Give back a slot reserved and not used (its caller was cancelled: a revoke abandons
        up to INKIT_MAX_IN_FLIGHT waiters at once). The queue's tail moves back one slot, so the
        rate over any window stays what it was; without it, the abandoned slots would be a gap of
        up to INKIT_MAX_IN_FLIGHT / rate seconds in which nobody sends."""
        if self._rate > 0:
            self._next_free = max(self._clock(), self._next_free - self._interval)


class RateControl:
    """This member's request rate: the group's rate × this member's share, in a TokenBucket.

    The group's rate is INKIT_RATE_LIMIT, or with ``adaptive`` the AIMD rate that 429s push down
    and successes probe up. The share is 1 with INKIT_RATE_LIMIT_SCOPE=pod; with ``group`` the
    ShareWatcher (group_share.py) sets it from this member's assignment. Every method runs on the
    sender's loop thread (``set_share`` is handed over with ``call_soon_threadsafe``).
    """

    def __init__(
        self,
        group_rate: float,
        metrics: Metrics,
        *,
        share: float = 1.0,
        adaptive: AdaptiveRate | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fixed_rate = group_rate
        self._adaptive = adaptive
        self._share = share
        self._metrics = metrics
        self._bucket = TokenBucket(self.member_rate, clock=clock)
        self._publish()

    @property
    def adaptive(self) -> bool:
        return self._adaptive is not None

    @property
    def group_rate(self) -> float:
        return self._adaptive.rate if self._adaptive is not None else self._fixed_rate

    @property
    def share(self) -> float:
        return self._share

    @property
    def member_rate(self) -> float:
        return self.group_rate * self._share

    def set_share(self, share: float) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError("share must be within [0, 1]")
        self._share = share
        self._apply()

    async def acquire(self) -> None:
        await self._bucket.acquire()

    def on_rate_limited(self) -> None:
        """A 429: in adaptive mode, step the group's rate down."""
        if self._adaptive is not None and self._adaptive.on_rate_limited():
            self._metrics.rate_limit_decreases.inc()
            self._apply()

    def on_delivered(self) -> None:
        """A 2xx: in adaptive mode, probe the group's rate up."""
        if self._adaptive is not None and self._adaptive.on_delivered():
            self._apply()

    def _apply(self) -> None:
        self._bucket.set_rate(self.member_rate)
        self._publish()

    def _publish(self) -> None:
        self._metrics.rate_limit_share.set(self._share)
        self._metrics.rate_limit_group.set(self.group_rate)
        self._metrics.rate_limit_member.set(self.member_rate)


def build_rate_control(settings: Settings, metrics: Metrics) -> RateControl | None:
    """The RateControl INKIT_RATE_LIMIT* ask for, or None without INKIT_RATE_LIMIT. With group
    scope the share starts at 0: nothing is assigned until the ShareWatcher has read it."""
    if settings.rate_limit is None:
        return None
    adaptive = None
    if settings.rate_limit_adaptive:
        adaptive = AdaptiveRate(
            settings.rate_limit,
            floor=min(settings.rate_limit_min, settings.rate_limit),
            step_per_s=settings.rate_limit_probe_step or settings.rate_limit / 100,
        )
    share = 0.0 if settings.rate_limit_scope == "group" else 1.0
    return RateControl(settings.rate_limit, metrics, share=share, adaptive=adaptive)
