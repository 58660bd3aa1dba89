"""The commit watermark only ever passes finished records, contiguously."""

import pytest

from connector.offsets import OffsetTracker


def test_nothing_committable_until_the_first_record_finishes() -> None:
    t = OffsetTracker()
    t.track("t", 0, 10)
    t.track("t", 0, 11)
    assert t.committable("t", 0) is None
    t.mark_done("t", 0, 11)
    assert t.committable("t", 0) is None  # 10 is still unfinished: committing 12 would lose it
    t.mark_done("t", 0, 10)
    assert t.committable("t", 0) == 12  # Kafka commits the next offset to read


def test_gaps_in_offsets_are_fine() -> None:
    t = OffsetTracker()
    for offset in (3, 7, 20):  # compaction or transaction markers leave holes
        t.track("t", 1, offset)
    t.mark_done("t", 1, 3)
    t.mark_done("t", 1, 7)
    assert t.committable("t", 1) == 8
    assert t.outstanding("t", 1) == 1


def test_partitions_are_independent() -> None:
    t = OffsetTracker()
    t.track("t", 0, 0)
    t.track("t", 1, 0)
    t.mark_done("t", 1, 0)
    assert t.all_committable() == {("t", 1): 1}


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
