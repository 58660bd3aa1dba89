"""What the sent-ledger remembers in memory: event identities (as 64-bit hashes) with the time
they were sent, and the intents still open (AMBIGUOUS_SEND_POLICY=dead-letter).

The ledger topic's values, by their first byte: ``{`` a sent record (JSON), ``i`` an intent (a
send about to start), none (a tombstone) an intent resolved without a send. Compaction keeps
the newest value per identity, so a sent record or a tombstone replaces the intent before it."""

from __future__ import annotations

import hashlib
import json
import threading
from array import array
from bisect import bisect_left

from connector.models import SegmentMessage

MERGE_AT = 50_000  # newest entries kept in a dict until merged into the sorted arrays
INTENT_PREFIX = b"i"
INTENT_BYTE = INTENT_PREFIX[0]


def identity_of(event: SegmentMessage) -> str:
    """The event's identity: Segment's ``messageId``; without one, ``sha256:`` and the hash of
    the event's canonical JSON (type, ids, timestamps, traits, context, integrations), so the
    same event produced twice is recognised and two different events never are."""
    if event.message_id:
        return event.message_id
    canonical = json.dumps(
        {
            "type": event.type,
            "userId": event.user_id,
            "anonymousId": event.anonymous_id,
            "timestamp": event.timestamp,
            "originalTimestamp": event.original_timestamp,
            "sentAt": event.sent_at,
            "traits": event.traits,
            "context": event.context,
            "integrations": event.integrations,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def hash64(identity: str | bytes) -> int:
    """A 64-bit hash of the identity's UTF-8 bytes. Python's own (SipHash): the index lives in
    one process's memory and is rebuilt at every start, so a per-process seed is fine, and it
    is about ten times cheaper than blake2b (the rebuild hashes every ledger record)."""
    return hash(identity.encode() if isinstance(identity, str) else identity)


class LedgerIndex:
    """Identities (as 64-bit hashes) with the time they were sent, in seconds, and open intents.

    Lookups run on the consume thread, additions on the follower thread and on ledger acks;
    every mutation is a single dict operation or an atomic swap of the array pair, so no lock is
    needed under the GIL. A 64-bit hash collision (about 1 in 10^13 per lookup with a million
    entries) would skip one event; the figure is in the README. Open intents are few (the sends
    in flight when a member died), so they stay in a dict."""

    def __init__(self) -> None:
        self._sorted: tuple[array[int], array[int]] = (array("q"), array("I"))
        self._recent: dict[int, int] = {}
        self._merging: dict[int, int] = {}  # what a merge in progress folds into the arrays
        self._intents: dict[int, int] = {}
        self._lock = threading.Lock()  # only merges take it: two merges must not interleave

    def __len__(self) -> int:
        return len(self._sorted[0]) + len(self._recent) + len(self._merging)

    def add(self, key: int, sent_s: int) -> None:
        """``key`` was sent at ``sent_s``: remembered, and its intent (if any) resolved."""
        if self._recent.get(key, -1) < sent_s:
            self._recent[key] = sent_s
        self._intents.pop(key, None)
        if len(self._recent) >= MERGE_AT and not self._lock.locked():
            self.merge()

    def sent_at(self, key: int) -> int | None:
        """When ``key`` was last sent (seconds), or None."""
        recent = self._recent.get(key)
        merging = self._merging.get(key)  # read before the arrays: a merge publishes them first
        if merging is not None and (recent is None or merging > recent):
            recent = merging
        keys, times = self._sorted
        i = bisect_left(keys, key)
        bulk = times[i] if i < len(keys) and keys[i] == key else None
        if recent is None:
            return bulk
        return recent if bulk is None else max(recent, bulk)

    def intend(self, key: int, at_s: int) -> None:
        """An intent for ``key`` was read: a send started at ``at_s`` and no outcome is known."""
        self._intents[key] = at_s

    def resolve(self, key: int) -> None:
        """``key``'s intent is closed (a tombstone was read or written)."""
        self._intents.pop(key, None)

    def intent_at(self, key: int) -> int | None:
        """When an open intent for ``key`` was written (seconds), or None."""
        return self._intents.get(key)

    @property
    def open_intents(self) -> int:
        return len(self._intents)

    def load(self, entries: dict[int, int], intents: dict[int, int] | None = None) -> None:
        """Replace the whole index with ``entries`` (hash -> sent seconds) and the open
        ``intents`` (hash -> seconds), at start-up. ``entries`` is used as it is, a dict that
        lookups can use at once; ``merge`` (the follower thread calls it first) folds it into
        the sorted arrays, off the start-up path: sorting a million keys took a third of the
        rebuild (the profile in bench/RESULTS.md)."""
        self._sorted = (array("q"), array("I"))
        self._merging = {}
        self._recent = entries
        self._intents = dict(intents or {})

    def merge(self) -> None:
        """Fold the newest entries into the sorted arrays (O(n log n), off the hot path).
        Additions meanwhile go to a fresh dict; lookups see the entries being merged until the
        new arrays are published."""
        with self._lock:
            recent = self._recent
            if not recent:
                return
            self._merging = recent
            self._recent = {}
            keys, times = self._sorted
            if keys:
                merged: dict[int, int] = dict(zip(keys, times, strict=True))
                for key, sent_s in recent.items():
                    if merged.get(key, -1) < sent_s:
                        merged[key] = sent_s
            else:
                merged = recent
            ordered = sorted(merged)
            # map() over the dict's bound __getitem__ runs in C (a generator expression here
            # cost more than the sort).
            self._sorted = (array("q", ordered), array("I", map(merged.__getitem__, ordered)))
            self._merging = {}
