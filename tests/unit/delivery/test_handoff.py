"""The handoff clock (issue #13): a new owner compares the old owner's wall-clock drain deadline
with its own clock once. A skew either way must neither hold the partition for ever nor skip
the wait (which would re-send what the old owner's drain delivers)."""

from __future__ import annotations

import time
from concurrent.futures import Future

import pytest

from connector.delivery.commits import HANDOFF_MARGIN_S
from connector.delivery.handoff import handoff_wait_s
from connector.delivery.offsets import decode_metadata, encode_metadata
from tests.fakes import FakeConsumer
from tests.unit.delivery.test_processor import Harness, event, recording_handler, wait_for

BOUND_S = 25.0 + HANDOFF_MARGIN_S  # DRAIN_TIMEOUT_SECONDS' default plus the margin
NOW_MS = 1_800_000_000_000


@pytest.mark.parametrize("skew_s", [-BOUND_S, -20.0, -0.5, 0.0, 0.5, 20.0, BOUND_S])
@pytest.mark.parametrize("left_s", [0.0, 1.0, 17.0, BOUND_S])
def test_an_unnamed_announcement_is_waited_for_as_long_as_the_drain_has_left(
    skew_s: float, left_s: float
) -> None:
    """The old owner's clock reads ``skew_s`` ahead of ours (negative: behind) and its drain
    has ``left_s`` left: we wait at least that long and never more than the bound."""
    until_ms = int(NOW_MS + (left_s + skew_s) * 1000)
    wait = handoff_wait_s(until_ms, NOW_MS, BOUND_S)
    assert left_s <= wait <= BOUND_S


def test_a_clock_far_ahead_never_holds_the_partition_longer_than_the_bound() -> None:
    assert handoff_wait_s(NOW_MS + 3_600_000, NOW_MS, BOUND_S) == BOUND_S


def test_an_unnamed_drain_that_ended_longer_ago_than_the_bound_is_not_waited_for() -> None:
    assert handoff_wait_s(NOW_MS - int(BOUND_S * 1000) - 1, NOW_MS, BOUND_S) == 0.0


@pytest.mark.parametrize("skew_s", [-3600.0, -BOUND_S - 1, 0.0, 3600.0])
def test_a_named_announcer_is_waited_for_the_bound_whatever_the_clocks_say(skew_s: float) -> None:
    """Its leaving the group (or its final commit) ends the wait, not a clock."""
    until_ms = int(NOW_MS + (BOUND_S + skew_s) * 1000)
    assert handoff_wait_s(until_ms, NOW_MS, BOUND_S, announcer="m-old") == BOUND_S


def test_the_announcement_names_its_owner_only_where_it_fits() -> None:
    text, _ = encode_metadata(5, [(7, 7)], 1, draining_until_ms=2, draining_by="m-1")
    assert decode_metadata(5, text).draining_by == "m-1"
    assert decode_metadata(5, text).done == {7}
    small, _ = encode_metadata(5, [], 1, draining_until_ms=2, max_chars=10, draining_by="m-1")
    assert decode_metadata(5, small).draining_by is None
    assert decode_metadata(5, "since:1;by:m-1").draining_by is None  # no drain, no announcer


def _old_owner_still_draining(consumer: FakeConsumer, metadata: str) -> None:
    for seq in range(10):
        consumer.append(0, f"u{seq}".encode(), event(f"u{seq}", seq))
    consumer.committed_offsets[0] = 2  # it is delivering 2..5 in its drain
    consumer.committed_metadata[0] = metadata


def _final_commit_lands_and_the_rest_is_read(h: Harness, delivered: list[dict[str, object]]):  # type: ignore[no-untyped-def]
    consumer = h.consumer
    with h.running():
        time.sleep(0.5)
        assert delivered == []  # nothing read while the previous owner drains
        consumer.committed_offsets[0] = 6
        consumer.committed_metadata[0] = ""
        wait_for(lambda: consumer.committed_offsets.get(0) == 10)
    assert sorted(int(b["seq"]) for b in delivered) == [6, 7, 8, 9]  # type: ignore[call-overload]


def test_an_old_owner_whose_clock_is_behind_is_still_waited_for() -> None:
    """Its deadline (its clock, 20 s behind ours) looks 5 s past: before, the partition was
    read at once and 2..5, which the old owner's drain delivers, were sent a second time."""
    consumer = FakeConsumer("t", partitions=1)
    until = int((time.time() - 20 + 15) * 1000)  # announced just now, 15 s to go, clock -20 s
    _old_owner_still_draining(consumer, f"drain:{until}")
    delivered: list[dict[str, object]] = []
    _final_commit_lands_and_the_rest_is_read(
        Harness(consumer, recording_handler(delivered)), delivered
    )


def test_a_named_old_owner_an_hour_behind_is_still_waited_for() -> None:
    consumer = FakeConsumer("t", partitions=1)
    until = int((time.time() - 3600 + 15) * 1000)
    _old_owner_still_draining(consumer, f"drain:{until};by:old-owner")
    delivered: list[dict[str, object]] = []

    def members() -> Future[list[str]]:
        future: Future[list[str]] = Future()
        future.set_result([consumer.member_id, "old-owner"])  # still in the group, draining
        return future

    h = Harness(consumer, recording_handler(delivered), group_members=members)
    _final_commit_lands_and_the_rest_is_read(h, delivered)


def test_a_drain_this_member_announced_itself_is_not_waited_for() -> None:
    """Revoked from this member (its final commit lost), then given back: nobody drains."""
    consumer = FakeConsumer("t", partitions=1)
    until = int((time.time() + 30) * 1000)
    _old_owner_still_draining(consumer, f"drain:{until};by:{consumer.member_id}")
    delivered: list[dict[str, object]] = []

    def members() -> Future[list[str]]:
        future: Future[list[str]] = Future()
        future.set_result([consumer.member_id, "someone-else"])
        return future

    h = Harness(consumer, recording_handler(delivered), group_members=members)
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 10)
    assert sorted(int(b["seq"]) for b in delivered) == list(range(2, 10))  # type: ignore[call-overload]
