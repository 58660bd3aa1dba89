"""Backoff grows exponentially with full jitter and honours Retry-After in both forms."""

import random

from connector.inkit.retry import MAX_RETRY_AFTER_S, Backoff, parse_retry_after


def test_full_jitter_stays_under_the_exponential_ceiling() -> None:
    backoff = Backoff(base_s=0.5, max_s=8.0, rng=random.Random(1))
    for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)):
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spans the range, not a constant


def test_retry_after_is_a_floor_and_is_capped() -> None:
    backoff = Backoff(rng=random.Random(2))
    assert backoff.delay(1, retry_after_s=3.0) >= 3.0
    assert backoff.delay(1, retry_after_s=10**9) <= MAX_RETRY_AFTER_S + backoff.max_s


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 0.5 ", now) == 0.5
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now) == 30.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0.0  # in the past
    for bad in (None, "", "soon", "nan", "Tue, 99 Nov"):
        assert parse_retry_after(bad, now) is None
    assert parse_retry_after("-5", now) == 0.0
