"""The redrive filters: each one alone, together, and how the command line spells them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector.delivery.selection import Selection, parse_offsets, parse_time
from connector.kafka.dead_letter import DeadLetter

NOW_S = datetime(2026, 12, 3, 12, 0, tzinfo=UTC).timestamp()
HOUR_MS = 3_600_000


def letter(**fields: object) -> DeadLetter:
    base: dict[str, object] = {
        "reason": "http_422",
        "failed_at_ms": int(NOW_S * 1000) - HOUR_MS,
        "original_topic": "identify",
        "original_partition": 1,
        "original_offset": 40,
        "group": "inkit-connector",
    }
    return DeadLetter(**{**base, **fields})  # type: ignore[arg-type]


def test_an_empty_selection_takes_every_dead_letter_even_without_headers() -> None:
    assert Selection().admits(letter())
    assert Selection().admits(DeadLetter())


def test_reason_is_any_of_the_given_codes() -> None:
    selection = Selection(reasons=frozenset({"http_422", "retry_exhausted"}))
    assert selection.admits(letter())
    assert selection.admits(letter(reason="retry_exhausted"))
    assert not selection.admits(letter(reason="invalid_avro"))


def test_since_is_inclusive_until_exclusive_and_a_copy_without_a_time_is_left_out() -> None:
    at = int(NOW_S * 1000) - HOUR_MS
    assert Selection(since_ms=at).admits(letter())
    assert not Selection(since_ms=at + 1).admits(letter())
    assert Selection(until_ms=at + 1).admits(letter())
    assert not Selection(until_ms=at).admits(letter())
    assert not Selection(since_ms=0).admits(letter(failed_at_ms=None))


def test_partition_and_offset_are_the_original_records() -> None:
    assert Selection(partitions=frozenset({1, 2})).admits(letter())
    assert not Selection(partitions=frozenset({0})).admits(letter())
    assert Selection(offsets=(40, 40)).admits(letter())
    assert Selection(offsets=(30, None)).admits(letter())
    assert not Selection(offsets=(41, None)).admits(letter())
    assert not Selection(offsets=(0, 39)).admits(letter())
    assert not Selection(offsets=(0, None)).admits(letter(original_offset=None))


def test_only_this_groups_copies_and_those_of_no_group() -> None:
    selection = Selection(group="inkit-connector")
    assert selection.admits(letter())
    assert selection.admits(letter(group=None))
    assert not selection.admits(letter(group="another-connector"))


def test_filters_combine_with_and() -> None:
    selection = Selection(reasons=frozenset({"http_422"}), partitions=frozenset({1}))
    assert selection.admits(letter())
    assert not selection.admits(letter(original_partition=0))
    assert not selection.admits(letter(reason="retry_exhausted"))


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [
        ("2026-12-03T10:00:00Z", int(NOW_S * 1000) - 2 * HOUR_MS),
        ("2026-12-03T10:00:00", int(NOW_S * 1000) - 2 * HOUR_MS),
        ("2026-12-03T11:00:00+01:00", int(NOW_S * 1000) - 2 * HOUR_MS),
        ("2h", int(NOW_S * 1000) - 2 * HOUR_MS),
        ("90m", int(NOW_S * 1000) - 90 * 60_000),
        ("1d", int(NOW_S * 1000) - 24 * HOUR_MS),
        ("30s", int(NOW_S * 1000) - 30_000),
    ],
)
def test_times_are_iso_8601_or_a_duration_ago(text: str, expected_ms: int) -> None:
    assert parse_time(text, NOW_S) == expected_ms


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "", "12-03"])
def test_other_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a time"):
        parse_time(text, NOW_S)


def test_offsets_one_a_range_or_open_ended() -> None:
    assert parse_offsets("7") == (7, 7)
    assert parse_offsets("7-9") == (7, 9)
    assert parse_offsets("7-") == (7, None)
    for bad in ("-7", "a", "9-7", "1-2-3"):
        with pytest.raises(ValueError, match=r"offset|range"):
            parse_offsets(bad)


def test_describe_names_every_filter_without_record_content() -> None:
    text = Selection(
        reasons=frozenset({"http_422"}),
        since_ms=0,
        partitions=frozenset({2}),
        offsets=(5, None),
    ).describe()
    assert text == (
        "reason http_422; dead-lettered since 1970-01-01T00:00:00+00:00; "
        "original partition 2; original offset 5-"
    )
    assert Selection().describe() == "every dead letter"
