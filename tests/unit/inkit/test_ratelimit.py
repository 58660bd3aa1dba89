"""INKIT_RATE_LIMIT spaces requests evenly, allowing only a small burst; a member sends at the
group's rate times its share."""

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from connector.inkit.adaptive import AdaptiveRate
from connector.inkit.ratelimit import RateControl, TokenBucket, build_rate_control
from connector.observability.metrics import Metrics
from connector.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_requests_are_spaced_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=1, clock=clock)
    waits = [bucket.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_idle_time_builds_at_most_a_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    clock.now += 60  # a long idle minute
    waits = [bucket.reserve() for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] > 0
    assert waits[4] > waits[3]


def test_a_new_rate_spaces_the_next_reservations() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=1, clock=clock)
    assert bucket.reserve() == 0.0
    bucket.set_rate(2)
    waits = [bucket.reserve() for _ in range(3)]
    # The slot handed out at rate 10 stands; from then on slots are 0.5 s apart.
    assert waits == pytest.approx([0.1, 0.6, 1.1])


def test_a_slot_given_back_is_taken_by_the_next_caller() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=1, clock=clock)
    waits = [bucket.reserve() for _ in range(5)]  # slots up to 0.4 s ahead
    for _ in range(4):
        bucket.release()  # four of them were cancelled before their slot came
    assert bucket.reserve() == pytest.approx(0.1)
    assert waits[-1] == pytest.approx(0.4)


def test_waiters_woken_late_by_a_stall_do_not_burst() -> None:
    """A process stalled for a second wakes every waiter whose slot passed: they take fresh slots,
    spaced at the rate from the end of the stall, instead of all going at once."""
    clock = Clock()
    bucket = TokenBucket(rate=100, burst=2, clock=clock)

    async def scenario() -> None:
        tasks = [asyncio.create_task(bucket.acquire()) for _ in range(10)]
        await asyncio.sleep(0)  # all ten reserve slots 10 ms apart (the first one goes now)
        clock.now += 1.0  # a one-second stall: every slot is in the past
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    # The nine stale waiters re-queued 10 ms apart from the end of the stall (less the burst), so
    # a newcomer waits 80 ms behind them. Had they all gone at once, it would not wait at all.
    assert bucket.reserve() == pytest.approx(0.08)


def test_rate_zero_parks_callers_until_a_rate_is_set() -> None:
    async def scenario() -> list[str]:
        bucket = TokenBucket(rate=0)
        events: list[str] = []

        async def caller() -> None:
            await bucket.acquire()
            events.append("sent")

        task = asyncio.create_task(caller())
        for _ in range(10):
            await asyncio.sleep(0)  # let the caller run as far as it can
        events.append("rate set")
        bucket.set_rate(1000)
        await asyncio.wait_for(task, 5)
        return events

    assert asyncio.run(scenario()) == ["rate set", "sent"]


def test_member_rate_is_the_group_rate_times_the_share() -> None:
    metrics = Metrics(CollectorRegistry())
    control = RateControl(100, metrics, share=0.0)
    control.set_share(2 / 6)
    assert control.member_rate == pytest.approx(100 / 3)
    assert metrics.rate_limit_member._value.get() == pytest.approx(100 / 3)
    assert metrics.rate_limit_group._value.get() == 100
    assert metrics.rate_limit_share._value.get() == pytest.approx(1 / 3)
    control.on_rate_limited()  # not adaptive: a 429 does not move a configured rate
    assert control.group_rate == 100


def test_adaptive_group_rate_steps_down_on_429_and_is_shared() -> None:
    clock = Clock()
    metrics = Metrics(CollectorRegistry())
    adaptive = AdaptiveRate(200, floor=1, step_per_s=2, clock=clock)
    control = RateControl(200, metrics, share=0.5, adaptive=adaptive, clock=clock)
    control.on_rate_limited()
    assert control.group_rate == pytest.approx(160)
    assert control.member_rate == pytest.approx(80)
    assert metrics.rate_limit_decreases._value.get() == 1
    clock.now += 1.0
    control.on_delivered()
    assert metrics.rate_limit_group._value.get() == pytest.approx(162)


def test_build_rate_control_from_settings() -> None:
    base = {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_TOPIC": "t", "INKIT_API_KEY": "x"}
    base["KAFKA_VALUE_FORMAT"] = "json"
    metrics = Metrics(CollectorRegistry())
    assert build_rate_control(Settings.from_env(base), metrics) is None
    pod = build_rate_control(Settings.from_env({**base, "INKIT_RATE_LIMIT": "50"}), metrics)
    assert pod is not None
    assert pod.member_rate == 50
    assert not pod.adaptive
    group_env = {**base, "INKIT_RATE_LIMIT": "50", "INKIT_RATE_LIMIT_SCOPE": "group"}
    group = build_rate_control(Settings.from_env(group_env), metrics)
    assert group is not None
    assert group.member_rate == 0
    adaptive_env = {**group_env, "INKIT_RATE_LIMIT_ADAPTIVE": "true"}
    adaptive = build_rate_control(Settings.from_env(adaptive_env), metrics)
    assert adaptive is not None
    assert adaptive.adaptive
