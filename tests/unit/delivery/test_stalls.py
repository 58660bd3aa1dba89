"""Issue #13 ("never stuck, never lost"): one regression test per stall hole, against the
in-memory consumer and the real sender over an httpx MockTransport. Each failed on the code
before the fix (see the commit that added it)."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx

from connector.delivery.offsets import decode_metadata
from tests.fakes import FakeConsumer, FakeProducer
from tests.unit.delivery.test_processor import (
    FakeScanner,
    Harness,
    event,
    recording_handler,
    wait_for,
)


def test_an_auth_block_lifts_after_its_prober_was_revoked() -> None:
    """Defect 1: 401, the partitions are revoked (the prober and the waiters are cancelled),
    come back, and the key is fixed: delivery resumes."""
    consumer = FakeConsumer("t", partitions=2)
    for seq in range(20):
        consumer.append(seq % 2, f"u{seq}".encode(), event(f"u{seq}", seq))
    key_ok = threading.Event()
    delivered: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if not key_ok.is_set():
            return httpx.Response(401)
        delivered.append(json.loads(request.content)["seq"])
        return httpx.Response(202)

    h = Harness(consumer, handler, drain_timeout_s=0.2)
    with h.running():
        wait_for(lambda: h.metrics.auth_blocked._value.get() == 1)
        wait_for(lambda: consumer.paused == {0, 1})
        assigned = h.metrics.rebalances.labels("assigned")._value.get()
        consumer.revoke([0, 1])
        wait_for(lambda: h.metrics.rebalances.labels("assigned")._value.get() == assigned + 1)
        key_ok.set()
        wait_for(lambda: sum(consumer.committed_offsets.values()) == 20)
        assert h.metrics.auth_blocked._value.get() == 0
    assert sorted(set(delivered)) == list(range(20))


def test_a_partition_paused_when_revoked_is_fetched_again_when_it_comes_back() -> None:
    """Defect 2: backpressure pauses the partition, it is revoked mid-stall and given back to
    the same member; librdkafka kept the pause flag, so it must be resumed."""
    consumer = FakeConsumer("t", partitions=1)
    for seq in range(300):
        consumer.append(0, b"one-user", event("one-user", seq))
    release = threading.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        while not release.is_set():
            await asyncio.sleep(0.005)
        return httpx.Response(202)

    h = Harness(consumer, handler, max_buffered=64, drain_timeout_s=0.2)
    with h.running():
        wait_for(lambda: consumer.paused == {0})
        revoked = h.metrics.rebalances.labels("revoked")._value.get()
        consumer.revoke([0])
        wait_for(lambda: h.metrics.rebalances.labels("revoked")._value.get() == revoked + 1)
        release.set()
        wait_for(lambda: consumer.committed_offsets.get(0) == 300, timeout_s=20)


def test_an_undecodable_http_answer_is_retried_not_lost() -> None:
    """Defect 3: a 502 whose body claims gzip raises httpx.DecodingError; the job must end as
    a result (here: retried, then delivered), or the user's later events wait forever."""
    consumer = FakeConsumer("t", partitions=1)
    for seq in range(5):
        consumer.append(0, b"one-user", event("one-user", seq))
    broken = {"left": 3}
    delivered: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if broken["left"] > 0:
            broken["left"] -= 1
            return httpx.Response(
                502, headers={"Content-Encoding": "gzip"}, content=b"<html>bad gateway"
            )
        delivered.append(json.loads(request.content)["seq"])
        return httpx.Response(202)

    h = Harness(consumer, handler)
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 5)
    assert delivered == [0, 1, 2, 3, 4]
    assert h.metrics.retries.labels("http_error")._value.get() == 3


def test_an_unforeseen_exception_in_a_delivery_dead_letters_the_record() -> None:
    """Defect 3: anything else a delivery raises ends as a dead letter with a reason."""
    consumer = FakeConsumer("t", partitions=1)
    consumer.append(0, b"u", event("u", 0, explode=True))
    consumer.append(0, b"u", event("u", 1))
    delivered: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("explode"):
            raise RuntimeError("a bug")
        delivered.append(body["seq"])
        return httpx.Response(202)

    h = Harness(consumer, handler)
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 2)
    assert delivered == [1]
    reasons = [dict(p["headers"])["inkit.error.reason"] for p in h.producer.produced]
    assert reasons == [b"unexpected_error"]


def test_a_dead_letter_copy_too_large_for_the_producer_goes_without_its_value() -> None:
    """Defect 4: produce() itself refuses it (MSG_SIZE_TOO_LARGE); the copy goes without the
    value (and the record's own headers) instead of being retried forever."""
    consumer = FakeConsumer("t", partitions=1)
    # No template id (a mapping error), and larger than the producer takes.
    big = {"type": "identify", "userId": "u", "traits": {"pad": "x" * 5000}}
    consumer.append(0, b"u", json.dumps(big).encode())
    consumer.append(0, b"u", event("u", 1))
    h = Harness(consumer, recording_handler([]))
    h.producer = FakeProducer(max_message_bytes=4000)
    h.processor._dlq._producer = h.producer  # type: ignore[union-attr]
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 2)
    assert len(h.producer.produced) == 1
    copy = h.producer.produced[0]
    assert copy["value"] is None
    assert dict(copy["headers"])["inkit.value.omitted"] == b"too_large"


def test_a_stuck_record_blocks_neither_other_users_nor_memory() -> None:
    """Defect 5: other users of the partition keep flowing behind a stuck record; the commit
    stays at it and covers the rest as one range."""
    consumer = FakeConsumer("t", partitions=1)
    consumer.append(0, b"stuck", event("stuck", 0, slow=True))
    for seq in range(1, 1001):
        consumer.append(0, f"u{seq % 50}".encode(), event(f"u{seq % 50}", seq))
    release = threading.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content).get("slow"):
            while not release.is_set():
                await asyncio.sleep(0.005)
        return httpx.Response(202)

    h = Harness(consumer, handler, max_buffered=200, max_uncommitted=64)
    with h.running():
        wait_for(
            lambda: (
                decode_metadata(0, consumer.committed_metadata.get(0)).done == set(range(1, 1001))
            ),
            timeout_s=30,
        )
        assert consumer.committed_offsets[0] == 0
        assert consumer.committed_metadata[0].endswith("done:1-1000")
        assert h.processor._tracker.outstanding("t", 0) == 1
        release.set()
        wait_for(lambda: consumer.committed_offsets.get(0) == 1001)


def test_a_full_commit_metadata_does_not_lift_the_duplicate_cap() -> None:
    """Defect 6: once the finished ranges no longer fit, what they leave out counts as
    uncommitted, so sends stop at MAX_UNCOMMITTED_RECORDS rather than going on uncovered."""
    consumer = FakeConsumer("t", partitions=1)
    stuck_every = 20
    for seq in range(600):
        user = f"s{seq}" if seq % stuck_every == 0 and seq < 200 else f"u{seq % 7}"
        consumer.append(0, user.encode(), event(user, seq, slow=user.startswith("s")))
    release = threading.Event()
    delivered: set[int] = set()
    violations: list[int] = []
    cap = 32

    def uncovered() -> int:
        committed = consumer.committed_offsets.get(0, 0)
        done = decode_metadata(committed, consumer.committed_metadata.get(0)).done
        return sum(1 for o in delivered if o >= committed and o not in done)

    async def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("slow"):
            while not release.is_set():
                await asyncio.sleep(0.005)
        elif uncovered() > cap:
            # This send would make it cap + 2: past MAX_UNCOMMITTED_RECORDS plus the one
            # head-of-partition record that may go at the cap (one partition here).
            violations.append(body["seq"])
        delivered.add(body["seq"])
        return httpx.Response(202)

    h = Harness(consumer, handler, max_uncommitted=cap, max_in_flight=16, drain_timeout_s=0.5)
    h.processor._committer._metadata_chars = 24  # the text fills after a few ranges
    with h.running():
        wait_for(lambda: h.processor._committer.send_room(h.processor._in_flight, False) <= 0)
        assert violations == []
        release.set()
        wait_for(lambda: consumer.committed_offsets.get(0) == 600, timeout_s=20)
    assert violations == []


def test_a_commit_refused_for_its_metadata_size_falls_back_to_smaller_metadata() -> None:
    """Defect 6: a broker with a small offset.metadata.max.bytes refuses the commit; the
    connector writes less metadata and its commits land again."""
    consumer = FakeConsumer("t", partitions=1)
    consumer.max_metadata_bytes = 10  # "since:<13 digits>" alone is longer
    consumer.append(0, b"slow", event("slow", 0, slow=True))
    for seq in range(1, 50):
        consumer.append(0, f"u{seq}".encode(), event(f"u{seq}", seq))
    release = threading.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content).get("slow"):
            while not release.is_set():
                await asyncio.sleep(0.005)
        return httpx.Response(202)

    h = Harness(consumer, handler)
    with h.running():
        # While record 0 is pending a commit carries since/done metadata: it must land anyway.
        wait_for(lambda: consumer.committed_offsets.get(0) == 0)
        assert consumer.committed_metadata[0] == ""
        release.set()
        wait_for(lambda: consumer.committed_offsets.get(0) == 50)


def test_a_commit_made_while_nothing_is_pending_still_says_since_when() -> None:
    """Defect 7: a caught-up partition's commit carries "since", so a record dead-lettered
    after it and before the next commit is found by the next owner, not written twice."""
    consumer = FakeConsumer("t", partitions=1)
    consumer.append(0, b"u0", event("u0", 0))
    h = Harness(consumer, recording_handler([]))
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 1)
    since = decode_metadata(1, consumer.committed_metadata[0]).since_ms
    assert since is not None
    # The previous owner then dead-lettered offset 1 and died before committing: the next
    # owner scans from ``since`` and skips the copy.
    consumer.append(0, b"u1", b"")
    scanner = FakeScanner({("t", 0): {1}})
    consumer.assigned, consumer.paused = set(), set()  # a new process, a new consumer
    next_owner = Harness(consumer, recording_handler([]), scanner=scanner)
    with next_owner.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 2)
    assert scanner.calls == [(since, {("t", 0): 1})]
    assert next_owner.producer.produced == []


def test_a_revoke_drain_sends_only_the_partitions_it_drains() -> None:
    """Defect 8: while partition 1 is drained, partition 0 (kept) stays under the cap."""
    consumer = FakeConsumer("t", partitions=2)
    for seq in range(200):
        consumer.append(0, f"k{seq}".encode(), event(f"k{seq}", seq))
    consumer.append(1, b"slow", event("slow", 1000, slow=True))
    release = threading.Event()
    sent_during_drain: list[int] = []
    draining = threading.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("slow"):
            while not release.is_set():
                await asyncio.sleep(0.005)
        elif draining.is_set():
            sent_during_drain.append(body["seq"])
        return httpx.Response(202)

    h = Harness(consumer, handler, max_uncommitted=8, max_in_flight=4, drain_timeout_s=1.0)
    consumer.commits_fail = True  # nothing lands: partition 0 sits at its cap
    with h.running():
        wait_for(lambda: h.processor._committer.send_room(h.processor._in_flight, False) <= 0)
        draining.set()
        consumer.revoke([1])
        wait_for(lambda: ("t", 1) not in h.processor._partitions)  # the drain timed out
        draining.clear()
        release.set()
        consumer.commits_fail = False
        wait_for(lambda: consumer.committed_offsets.get(0) == 200)
    # At most the requests already on their way when the cap closed (the in-flight window);
    # the old drain sent partition 0's whole queue past the cap.
    assert len(sent_during_drain) <= 4


def test_a_keyed_record_and_a_keyless_event_of_one_user_share_an_order_key() -> None:
    """Defect 9: key b"u1" and userId "u1" are one user: never reordered."""
    consumer = FakeConsumer("t", partitions=1)
    consumer.append(0, b"u1", event("u1", 0, slow=True))
    consumer.append(0, None, event("u1", 1))
    order: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("slow"):
            await asyncio.sleep(0.2)
        order.append(body["seq"])
        return httpx.Response(202)

    h = Harness(consumer, handler)
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 2)
    assert order == [0, 1]


def _oldest(h: Harness, holder: str) -> float | None:
    return h.metrics.registry.get_sample_value(
        "inkit_connector_oldest_unfinished_age_seconds",
        {"topic": "t", "partition": "0", "holder": holder},
    )


def test_a_stall_is_visible_as_the_age_of_the_oldest_unfinished_record_and_its_holder() -> None:
    consumer = FakeConsumer("t", partitions=1)
    consumer.append(0, b"u", event("u", 0))
    answer = {"status": 503}

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(answer["status"])

    h = Harness(consumer, handler)
    with h.running():
        wait_for(lambda: (_oldest(h, "retrying") or 0.0) > 0.1)
        answer["status"] = 401
        wait_for(lambda: (_oldest(h, "auth") or 0.0) > 0.1)
        assert _oldest(h, "retrying") is None  # one series per partition: the label moved
        answer["status"] = 202
        wait_for(lambda: _oldest(h, "none") == 0.0)


def test_the_lag_gauge_follows_a_landed_commit_without_waiting_for_its_refresh() -> None:
    """Defect 9 (the demo's lag column): with the processor's clock frozen, the periodic lag
    refresh runs once; only the refresh on a landed commit can bring the gauge to 0."""
    consumer = FakeConsumer("t", partitions=1)
    for seq in range(10):
        consumer.append(0, f"u{seq}".encode(), event(f"u{seq}", seq))
    h = Harness(consumer, recording_handler([]))
    h.processor._clock = lambda: 1000.0
    lag = h.metrics.consumer_lag.labels("t", "0")
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 10)
        wait_for(lambda: lag._value.get() == 0)
