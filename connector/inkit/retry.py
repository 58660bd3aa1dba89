"""Backoff policy: exponential growth with full jitter, capped, honouring Retry-After."""

from __future__ import annotations

import datetime
import email.utils
import random
from dataclasses import dataclass, field

DEFAULT_BASE_DELAY_S = 0.5
DEFAULT_MAX_DELAY_S = 60.0
# A server's Retry-After is honoured up to this bound, so a hostile or broken value ("retry in a
# week") cannot park the whole client.
MAX_RETRY_AFTER_S = 600.0


@dataclass
class Backoff:
    """Delay before retry number ``attempt`` (1 for the first retry).

    Full jitter (a uniform draw in [0, min(cap, base * 2**(attempt-1))]) spreads retries of many
    records apart; when the server said Retry-After, that delay is used instead, as a floor.
    """

    base_s: float = DEFAULT_BASE_DELAY_S
    max_s: float = DEFAULT_MAX_DELAY_S
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        ceiling = min(self.max_s, self.base_s * (2 ** max(0, attempt - 1)))
        jittered = self.rng.uniform(0.0, ceiling)
        if retry_after_s is not None:
            return max(min(retry_after_s, MAX_RETRY_AFTER_S), 0.0) + jittered * 0.1
        return jittered


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None.

    ``now_s`` is the current Unix time, injected so the parse is deterministic in tests.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is not a delay
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no zone information (RFC 5322)
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now_s)
