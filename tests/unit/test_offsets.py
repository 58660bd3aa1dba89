"""The commit watermark only ever passes finished records, contiguously."""

import pytest

from connector.offsets import MAX_METADATA_CHARS, OffsetTracker, decode_done, encode_done


def test_the_watermark_stays_at_the_first_unfinished_record() -> None:
    t = OffsetTracker()
    assert t.committable("t", 0) is None
    t.track("t", 0, 10)
    t.track("t", 0, 11)
    assert t.committable("t", 0) == 10  # "resume at 10": safe before anything finished
    t.mark_done("t", 0, 11)
    assert t.committable("t", 0) == 10  # 10 is still unfinished: committing 12 would lose it
    assert t.done_above("t", 0) == [11]
    t.mark_done("t", 0, 10)
    assert t.committable("t", 0) == 12  # Kafka commits the next offset to read


def test_gaps_in_offsets_are_fine() -> None:
    t = OffsetTracker()
    for offset in (3, 7, 20):  # compaction or transaction markers leave holes
        t.track("t", 1, offset)
    t.mark_done("t", 1, 3)
    t.mark_done("t", 1, 7)
    assert t.committable("t", 1) == 8
    assert t.done_above("t", 1) == []
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
    text = encode_done(10, done)
    assert text == "done:2-4,10,21-22"
    assert decode_done(10, text) == set(done)


def test_commit_metadata_is_bounded_and_garbage_is_ignored() -> None:
    many = list(range(100, 100_000, 2))  # no runs: the worst case
    text = encode_done(99, many)
    assert len(text) <= MAX_METADATA_CHARS
    assert decode_done(99, text) <= set(many)  # a prefix: what did not fit is re-sent
    for junk in (None, "", "other tool's metadata", "done:x-y", "done:-"):
        assert decode_done(5, junk) == set()
