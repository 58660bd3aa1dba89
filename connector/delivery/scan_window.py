"""The dead-letter scan window: the "since" instant every commit carries, from which a next owner
reads the dead-letter topic back (kafka/dlq_recovery.py) to find the copies this owner wrote
after its last landed commit.

It was the read time of the oldest unfinished record (or of the last record read): after a
record stuck for hours, or an idle partition, a next owner read hours of the dead-letter topic,
inside the assign callback. Now it is the oldest produce time of a copy the commit does not
cover, else the current instant, moved forward at most every SINCE_REFRESH_S. A next owner so
reads the topic from at most SINCE_REFRESH_S (plus dlq_recovery's MARGIN_MS for clock steps)
before the last landed commit was made, unless a copy that commit could not cover (metadata full,
shrunk or switched off) is older: then from that copy.
"""

from __future__ import annotations

from connector.delivery.offsets import OffsetTracker
from connector.delivery.partition import PartitionState

# "since" moves forward at most this often while nothing older needs it: an idle partition's
# commit text (and so its commit) changes once per interval, not at every commit.
SINCE_REFRESH_S = 60.0


def commit_since_ms(
    state: PartitionState, tracker: OffsetTracker, next_offset: int, covered: int, now_ms: int
) -> int:
    """The "since" of a commit of ``next_offset`` whose metadata lists the finished offsets up
    to ``covered``: no dead-letter copy of ours that it does not cover (source offset at or
    above ``next_offset``, and not acked-and-listed) was produced before it."""
    produced = state.dead_letters_at
    for offset in [o for o in produced if o < next_offset]:
        del produced[offset]  # below the watermark: this and every later commit covers it
    oldest = now_ms
    for offset, at_ms in produced.items():
        acked = not tracker.is_unfinished(state.topic, state.partition, offset)
        if at_ms < oldest and not (acked and offset <= covered):
            oldest = at_ms
    kept = state.since_sent_ms
    if kept is not None and kept <= oldest and now_ms - kept < SINCE_REFRESH_S * 1000:
        return kept
    state.since_sent_ms = oldest
    return oldest
