"""Adaptive mode (AIMD): 429s step the rate down, successes probe it back up, within bounds."""

from __future__ import annotations

import pytest

from connector.inkit.adaptive import DECREASE_FACTOR, AdaptiveRate


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_starts_at_the_ceiling_and_steps_down_once_per_burst_of_429s() -> None:
    clock = Clock()
    aimd = AdaptiveRate(200, floor=1, step_per_s=2, clock=clock)
    assert aimd.rate == 200
    assert aimd.on_rate_limited()
    assert not aimd.on_rate_limited()  # the rest of the same burst: requests sent at the old rate
    assert aimd.rate == pytest.approx(200 * DECREASE_FACTOR)
    clock.now += 1.0
    assert aimd.on_rate_limited()
    assert aimd.rate == pytest.approx(200 * DECREASE_FACTOR**2)


def test_never_below_the_floor() -> None:
    clock = Clock()
    aimd = AdaptiveRate(10, floor=5, step_per_s=1, clock=clock)
    for _ in range(20):
        aimd.on_rate_limited()
        clock.now += 1.0
    assert aimd.rate == 5


def test_successes_probe_up_linearly_to_the_ceiling() -> None:
    clock = Clock()
    aimd = AdaptiveRate(100, floor=1, step_per_s=4, clock=clock)
    aimd.on_rate_limited()  # 80
    for _ in range(5):
        clock.now += 0.5
        aimd.on_delivered()
    assert aimd.rate == pytest.approx(80 + 4 * 2.5)
    for _ in range(20):
        clock.now += 1.0
        aimd.on_delivered()
    assert aimd.rate == 100


def test_idle_time_is_not_probing_time() -> None:
    clock = Clock()
    aimd = AdaptiveRate(100, floor=1, step_per_s=4, clock=clock)
    aimd.on_rate_limited()  # 80
    clock.now += 3600  # an idle hour: no request, so nothing learnt about Inkit's limit
    aimd.on_delivered()
    assert aimd.rate <= 80 + 4


def test_converges_below_a_hidden_limit() -> None:
    """Against a server that refuses whatever exceeds 120/s, the rate saws just below 120."""
    clock = Clock()
    aimd = AdaptiveRate(300, floor=1, step_per_s=3, clock=clock)
    rates = []
    for _ in range(600):  # 60 s in 0.1 s steps
        clock.now += 0.1
        if aimd.rate > 120:
            aimd.on_rate_limited()
        else:
            aimd.on_delivered()
        rates.append(aimd.rate)
    settled = rates[300:]
    assert max(settled) <= 123
    assert sum(settled) / len(settled) >= 0.8 * 120
