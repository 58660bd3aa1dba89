"""The window a next owner reads the dead-letter topic back from (issue #13): bounded by the last
landed commit, not by how long a record has been stuck or the partition idle."""

from __future__ import annotations

import time

from connector.delivery.offsets import OffsetTracker, decode_metadata
from connector.delivery.partition import PartitionState
from connector.delivery.scan_window import SINCE_REFRESH_S, commit_since_ms
from tests.fakes import FakeConsumer
from tests.unit.delivery.test_processor import Harness, recording_handler, wait_for
from tests.unit.delivery.test_scan_gate import SlowScanner

NOW_MS = 1_800_000_000_000
HOUR_MS = 3_600_000


def _stuck_for_hours() -> tuple[PartitionState, OffsetTracker]:
    """Offset 0 was read 4 h ago and is still retrying; 1..3 finished above it."""
    tracker = OffsetTracker()
    for offset in range(4):
        tracker.track("t", 0, offset, read_at_ms=NOW_MS - 4 * HOUR_MS)
    for offset in (1, 2, 3):
        tracker.mark_done("t", 0, offset)
    return PartitionState("t", 0, 1), tracker


def test_a_record_stuck_for_hours_does_not_widen_the_window() -> None:
    """Before, "since" was the stuck record's read time: a next owner read 4 h of the topic."""
    state, tracker = _stuck_for_hours()
    assert commit_since_ms(state, tracker, 0, 3, NOW_MS) == NOW_MS


def test_a_copy_the_commit_covers_does_not_widen_it_one_it_does_not_cover_does() -> None:
    state, tracker = _stuck_for_hours()
    state.dead_letters_at[2] = NOW_MS - HOUR_MS  # acked (finished)
    assert commit_since_ms(state, tracker, 0, 3, NOW_MS) == NOW_MS  # listed as done
    state.since_sent_ms = None
    # The metadata could list only up to 1: the copy of 2 is not covered, look back to it.
    assert commit_since_ms(state, tracker, 0, 1, NOW_MS) == NOW_MS - HOUR_MS


def test_a_copy_not_acked_yet_widens_it_to_its_produce_time() -> None:
    state, tracker = _stuck_for_hours()
    tracker.track("t", 0, 4, read_at_ms=NOW_MS - 1000)
    state.dead_letters_at[4] = NOW_MS - 500  # produced, no ack yet: unfinished
    assert commit_since_ms(state, tracker, 0, 3, NOW_MS) == NOW_MS - 500


def test_copies_below_the_watermark_are_forgotten() -> None:
    state, tracker = _stuck_for_hours()
    state.dead_letters_at[0] = NOW_MS - HOUR_MS
    tracker.mark_done("t", 0, 0)
    assert commit_since_ms(state, tracker, 4, 3, NOW_MS) == NOW_MS
    assert state.dead_letters_at == {}


def test_since_moves_forward_only_every_refresh_interval() -> None:
    """So an idle partition's commit text changes (and it is committed again) once a minute."""
    state, tracker = _stuck_for_hours()
    first = commit_since_ms(state, tracker, 0, 3, NOW_MS)
    later = NOW_MS + int(SINCE_REFRESH_S * 1000) - 1
    assert commit_since_ms(state, tracker, 0, 3, later) == first
    after = NOW_MS + int(SINCE_REFRESH_S * 1000)
    assert commit_since_ms(state, tracker, 0, 3, after) == after


def test_a_partition_idle_since_its_assignment_commits_a_fresh_since() -> None:
    """Before, it never committed: its "since" stayed the previous owner's, however old, and a
    next owner read the dead-letter topic back from there."""
    consumer = FakeConsumer("t", partitions=1)
    consumer.committed_offsets[0] = 0  # caught up, nothing new to read
    consumer.committed_metadata[0] = "since:1700000000000;done:3"
    scanner = SlowScanner()
    h = Harness(consumer, recording_handler([]), scanner=scanner)
    started_ms = int(time.time() * 1000)
    with h.running():
        wait_for(lambda: len(scanner.requests) == 1)
        scanner.answer({})
        wait_for(lambda: consumer.committed_metadata[0] != "since:1700000000000;done:3")
    metadata = decode_metadata(0, consumer.committed_metadata[0])
    assert metadata.since_ms is not None
    assert metadata.since_ms >= started_ms
    assert metadata.done == {3}  # what the previous owner recorded as done is kept
    assert consumer.committed_offsets[0] == 0
