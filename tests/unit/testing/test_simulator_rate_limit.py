"""The simulator's account-wide rate limit (Faults.max_rate_per_s): at most N requests pass in any
one-second window, the rest are answered 429 with Retry-After, and refusals do not count."""

from __future__ import annotations

import json

import pytest

from connector.testing.inkit_simulator import WEBHOOK_PATH, Faults
from connector.testing.inkit_simulator.core import _SimCore
from connector.testing.inkit_simulator.protocol import _Request

KEY = "k"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def post(core: _SimCore) -> tuple[int, str]:
    body = json.dumps({"api_token": KEY, "template_id": "t", "first_name": "A"}).encode()
    req = _Request("POST", WEBHOOK_PATH, {}, body, keep_alive=True, arrival=0.0)
    status, _, extra = core.respond(req, core.plan(req))
    return status, extra


def test_requests_above_the_limit_in_one_second_get_429_with_retry_after() -> None:
    clock = Clock()
    core = _SimCore(
        KEY, Faults(max_rate_per_s=5, retry_after_s=1), seed=0, max_records=None, clock=clock
    )
    answers = []
    for _ in range(8):
        answers.append(post(core))
        clock.now += 0.1  # 8 requests within 0.8 s
    assert [status for status, _ in answers] == [202] * 5 + [429] * 3
    assert answers[-1][1] == "Retry-After: 1\r\n"
    assert core.stats()["accepted"] == 5


def test_the_window_slides_and_refusals_do_not_use_it_up() -> None:
    clock = Clock()
    core = _SimCore(KEY, Faults(max_rate_per_s=2), seed=0, max_records=None, clock=clock)
    assert [post(core)[0] for _ in range(4)] == [202, 202, 429, 429]  # all at t=0
    clock.now += 0.5
    assert post(core)[0] == 429  # the two passed ones are still within the last second
    clock.now += 0.6  # t=1.1: both have left the window; the refusals never entered it
    assert [post(core)[0] for _ in range(3)] == [202, 202, 429]


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_rate_per_s"):
        Faults(max_rate_per_s=0)
