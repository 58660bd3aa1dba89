"""The commit watermark only ever passes finished records, contiguously."""

import pytest

from connector.delivery.offsets import (
    MAX_METADATA_CHARS,
    CommitMetadata,
    OffsetTracker,
    decode_done,
    decode_metadata,
    encode_done,
    encode_metadata,
    to_ranges,
)


def test_the_watermark_stays_at_the_first_unfinished_record() -> None:
    t = OffsetTracker()
    assert t.committable("t", 0) is None
    t.track("t", 0, 10)
    t.track("t", 0, 11)
    assert t.committable("t", 0) == 10  # "resume at 10": safe before anything finished
    t.mark_done("t", 0, 11)
    assert t.committable("t", 0) == 10  # 10 is still unfinished: committing 12 would lose it
    assert t.done_ranges("t", 0) == [(11, 11)]
    t.mark_done("t", 0, 10)
    assert t.committable("t", 0) == 12  # Kafka commits the next offset to read


def test_gaps_in_offsets_are_fine() -> None:
    t = OffsetTracker()
    for offset in (3, 7, 20):  # compaction or transaction markers leave holes
        t.track("t", 1, offset)
    t.mark_done("t", 1, 3)
    t.mark_done("t", 1, 7)
    assert t.committable("t", 1) == 20  # 8..19 do not exist: resuming at 20 skips nothing
    assert t.done_ranges("t", 1) == []
    assert t.outstanding("t", 1) == 1


def test_partitions_are_independent() -> None:
    t = OffsetTracker()
    t.track("t", 0, 0)
    t.track("t", 1, 0)
    t.mark_done("t", 1, 0)
    assert t.all_committable() == {("t", 0): 0, ("t", 1): 1}


def test_offsets_only_move_forward() -> None:
    t = OffsetTracker()
    t.track("t", 0, 5)
    with pytest.raises(ValueError, match="backwards"):
        t.track("t", 0, 5)


def test_forget_drops_everything_for_revoked_partitions() -> None:
    t = OffsetTracker()
    t.track("t", 0, 0)
    t.mark_done("t", 0, 0)
    t.forget([("t", 0)])
    assert t.committable("t", 0) is None
    t.mark_done("t", 0, 0)  # a late result for a lost partition is ignored
    assert t.all_committable() == {}


def test_done_above_the_watermark_round_trips_through_commit_metadata() -> None:
    done = [12, 13, 14, 20, 31, 32]
    text, covered = encode_done(10, to_ranges(done))
    assert text == "done:2-4,10,21-22"
    assert covered == 32
    assert decode_done(10, text) == set(done)


def test_commit_metadata_is_bounded_and_garbage_is_ignored() -> None:
    many = list(range(100, 100_000, 2))  # no runs: the worst case
    text, covered = encode_done(99, to_ranges(many))
    assert len(text) <= MAX_METADATA_CHARS
    assert decode_done(99, text) == {o for o in many if o <= covered}  # a prefix
    assert covered < many[-1]  # what did not fit is not claimed as covered
    for junk in (None, "", "other tool's metadata", "done:x-y", "done:-"):
        assert decode_done(5, junk) == set()


def test_commit_metadata_carries_since_when_the_uncommitted_records_were_worked_on() -> None:
    text, _ = encode_metadata(10, [(12, 13)], 1_700_000_000_123)
    assert text == "since:1700000000123;done:2-3"
    assert decode_metadata(10, text) == CommitMetadata(frozenset({12, 13}), 1_700_000_000_123)
    assert encode_metadata(10, [], None) == ("", 9)
    # Written by an earlier version: the done ranges still count.
    assert decode_metadata(10, "done:2-3") == CommitMetadata(frozenset({12, 13}), None)
    assert decode_metadata(10, "since:soon;done:0") == CommitMetadata(frozenset({10}), None)


def test_oldest_read_time_is_that_of_the_first_record_the_watermark_has_not_passed() -> None:
    t = OffsetTracker()
    assert t.oldest_read_ms("t", 0) is None
    t.track("t", 0, 5, read_at_ms=1000)
    t.track("t", 0, 6, read_at_ms=2000)
    t.mark_done("t", 0, 6)
    assert t.oldest_read_ms("t", 0) == 1000  # 6 is done, but 5 is not: look back to 5
    t.mark_done("t", 0, 5)
    assert t.oldest_read_ms("t", 0) is None
    assert not t.is_unfinished("t", 0, 5)


def test_memory_is_bounded_by_unfinished_records_not_by_finished_ones() -> None:
    """Issue #13, defect 5: one stuck record, 200,000 finished above it, kept as one range."""
    t = OffsetTracker()
    t.track("t", 0, 0)  # stuck
    for offset in range(1, 200_001):
        t.track("t", 0, offset)
        t.mark_done("t", 0, offset)
    assert t.committable("t", 0) == 0
    assert t.outstanding("t", 0) == 1
    assert t.done_ranges("t", 0) == [(1, 200_000)]
    t.mark_done("t", 0, 0)
    assert t.committable("t", 0) == 200_001


def test_a_finished_offset_below_the_committed_one_is_never_encoded_negative() -> None:
    """Issue #13, defect 6: a negative relative offset made the decoder drop the whole set."""
    text, covered = encode_done(10, [(5, 7), (12, 12)])
    assert text == "done:2"
    assert covered == 12
    assert decode_done(10, text) == {12}
