"""The circuit breaker's decisions: when it trips, what it holds, how a probe closes it."""

from __future__ import annotations

import pytest

from connector.delivery.breaker import BreakerAction, CircuitBreaker, Held


def held(n: int, generation: int = 1) -> Held:
    return Held(record=object(), error=f"error {n}", generation=generation)


def feed(breaker: CircuitBreaker, pattern: str, reason: str = "invalid_json") -> list[bool]:
    """``pattern``: one character per record, ``.`` delivered, ``x`` failed for ``reason``."""
    decisions = []
    for n, outcome in enumerate(pattern):
        if outcome == ".":
            breaker.succeeded()
        else:
            decisions.append(breaker.failed(reason, held(n)))
    return decisions


def test_a_run_of_one_reason_trips_on_the_min_failures_th_record() -> None:
    breaker = CircuitBreaker(min_failures=5, failure_ratio=0.5, window=20)
    decisions = feed(breaker, "xxxxxxx")
    assert decisions == [False, False, False, False, True, True, True]
    assert breaker.is_open
    assert breaker.reason == "invalid_json"
    assert breaker.held == 3


def test_a_normal_mix_of_bad_records_never_trips_with_the_defaults() -> None:
    breaker = CircuitBreaker()
    # 10% bad, and a burst of 15 bad in a row from one broken producer, over 10,000 records.
    pattern = ("........." + "x") * 500 + "x" * 15 + ("........." + "x") * 500
    assert not any(feed(breaker, pattern))
    assert not breaker.is_open


def test_failures_of_different_reasons_do_not_add_up() -> None:
    breaker = CircuitBreaker(min_failures=4, failure_ratio=0.5, window=10)
    for n, reason in enumerate(["invalid_json", "http_422", "missing_user"] * 3):
        assert breaker.failed(reason, held(n)) is False
    assert not breaker.is_open


def test_the_ratio_counts_successes_in_the_window() -> None:
    breaker = CircuitBreaker(min_failures=3, failure_ratio=0.5, window=10)
    assert feed(breaker, ".x.x..x") == [False, False, False]  # 3 of 7 < 50%
    assert feed(breaker, "x") == [True]  # 4 of 8


def test_dead_letter_action_reports_the_trip_but_never_holds() -> None:
    breaker = CircuitBreaker(min_failures=2, window=10, action=BreakerAction.DEAD_LETTER)
    assert feed(breaker, "xxxx") == [False, False, False, False]
    assert breaker.would_trip == "invalid_json"
    assert not breaker.is_open


def test_disabled_breaker_never_holds() -> None:
    breaker = CircuitBreaker(min_failures=1, window=1, enabled=False)
    assert feed(breaker, "xxx") == [False, False, False]


def test_a_probe_that_fails_again_goes_back_to_the_head_in_order() -> None:
    breaker = CircuitBreaker(min_failures=1, window=10)
    first, second = held(1), held(2)
    assert breaker.failed("http_422", first)
    assert breaker.failed("http_422", second)
    probe, delay = breaker.next_probe(lambda h: True)
    assert probe is first
    assert delay == 5.0
    assert breaker.next_probe(lambda h: True)[0] is None  # one probe out at a time
    assert breaker.failed("http_422", Held(first.record, "again", 1))
    head = breaker.first_held()
    assert head is not None
    assert head.record is first.record
    probe, delay = breaker.next_probe(lambda h: True)
    assert probe is not None
    assert probe.record is first.record
    assert delay == 20.0


def test_a_delivered_probe_closes_and_releases_everything_in_order() -> None:
    breaker = CircuitBreaker(min_failures=1, window=10)
    records = [held(n) for n in range(3)]
    for h in records:
        breaker.failed("http_422", h)
    probe, _ = breaker.next_probe(lambda h: True)
    assert probe is not None
    assert breaker.is_probe(probe.record)
    released = breaker.close()
    assert [h.record for h in released] == [r.record for r in records[1:]]
    assert not breaker.is_open
    assert breaker.held == 0
    # A fresh window: the released records are judged anew, not re-tripped by old counts.
    assert breaker.failed("http_422", held(9))  # min_failures=1: trips on its own again


def test_records_of_lost_partitions_are_dropped_and_an_empty_breaker_is_idle() -> None:
    breaker = CircuitBreaker(min_failures=1, window=10)
    breaker.failed("http_422", held(1, generation=1))
    probe, _ = breaker.next_probe(lambda h: h.generation == 2)
    assert probe is None
    assert breaker.idle()


def test_invalid_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="min_failures"):
        CircuitBreaker(min_failures=50, window=10)
