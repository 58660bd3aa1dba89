"""Outage lines: one WARNING when Inkit starts failing, reminders at most once a minute, one
line when it answers again (a fake clock; no sleeping)."""

from __future__ import annotations

import logging

import pytest

from connector.inkit.outage_log import OutageLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "connector.inkit.outage_log"]


def test_an_outage_is_one_line_a_minute_not_one_per_retry(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = OutageLog(clock, reminder_s=60.0)
    fields = {"topic": "t", "partition": 3, "offset": 7}
    with caplog.at_level(logging.INFO):
        for _ in range(406):  # the 50 s of 5xx, then 80 s more
            log.failed("server_error", 503, fields)
            clock.now += 0.32
        log.answered()
        log.answered()  # a second success after the end says nothing
    text = lines(caplog)
    assert text[0] == (
        "Inkit unavailable (server_error, HTTP 503): retrying with backoff; records wait, "
        "nothing is dead-lettered before INKIT_RETRY_MAX_SECONDS"
    )
    assert len(text) == 4  # start, reminders at 60 s and 120 s, end
    assert text[1].startswith("Inkit still unavailable (server_error, HTTP 503) after 60s")
    assert text[-1].startswith("Inkit answers again after 130s of server_error (406 failed")
    start = caplog.records[0]
    assert start.levelno == logging.WARNING
    assert (start.partition, start.offset, start.reason) == (3, 7, "server_error")  # type: ignore[attr-defined]


def test_a_throttle_says_so_and_nothing_is_logged_without_an_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = OutageLog(Clock())
    with caplog.at_level(logging.INFO):
        log.answered()
        log.failed("rate_limited", 429, {})
    assert lines(caplog) == [
        "Inkit throttles requests (rate_limited, HTTP 429): retrying with backoff; records wait, "
        "nothing is dead-lettered before INKIT_RETRY_MAX_SECONDS"
    ]
    assert log.active
