"""The consume loop's rules, against an in-memory consumer and the real sender over an httpx
MockTransport: per-user order under concurrency, commits never ahead of deliveries, dead letters,
revoke drains, the auth circuit breaker. The real broker repeats the important ones."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager

import httpx
import pytest
from prometheus_client import CollectorRegistry

from connector.delivery import scan_gate
from connector.delivery.offsets import decode_metadata
from connector.delivery.processor import Processor
from connector.errors import ConsumerError, DeadLetterScanError, RegistryUnavailable
from connector.inkit.client import InkitClient
from connector.inkit.retry import Backoff
from connector.inkit.sender import Sender
from connector.kafka.dlq import DeadLetterQueue
from connector.models import AmbiguousPolicy, SegmentMessage
from connector.observability.metrics import Metrics
from tests.fakes import FakeConsumer, FakeProducer, JsonDecoder, SimpleMapper

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def event(user: str, seq: int, **traits: object) -> bytes:
    body = {
        "type": "identify",
        "userId": user,
        "traits": {"template_id": "t", "seq": seq, **traits},
    }
    return json.dumps(body).encode()


class Harness:
    def __init__(self, consumer: FakeConsumer, handler: Handler, **kw: object) -> None:
        self.metrics = Metrics(CollectorRegistry())
        self.consumer = consumer
        self.producer = FakeProducer()
        self.http: httpx.MockTransport | None = None

        def factory() -> InkitClient:
            self.http = httpx.MockTransport(handler)
            return InkitClient(self.http, self.metrics)

        policy = kw.pop("ambiguous_policy", AmbiguousPolicy.RESEND)
        assert isinstance(policy, AmbiguousPolicy)

        self.sender = Sender(
            factory,
            self.metrics,
            retry_max_s=float(kw.pop("retry_max_s", 60.0)),  # type: ignore[arg-type]
            backoff=Backoff(base_s=0.01, max_s=0.05),
            auth_probe_first_s=0.05,
            ambiguous_policy=policy,
        )
        self.processor = Processor(
            consumer=consumer,
            decoder=JsonDecoder(),
            mapper=SimpleMapper(),
            sender=self.sender,
            dlq=DeadLetterQueue(self.producer, "t.dlq", self.metrics),
            metrics=self.metrics,
            topic=consumer.topic,
            max_in_flight=int(kw.pop("max_in_flight", 16)),  # type: ignore[call-overload]
            max_buffered=int(kw.pop("max_buffered", 1000)),  # type: ignore[call-overload]
            drain_timeout_s=float(kw.pop("drain_timeout_s", 5.0)),  # type: ignore[arg-type]
            max_uncommitted=kw.pop("max_uncommitted", None),  # type: ignore[arg-type]
            commit_interval_s=float(kw.pop("commit_interval_s", 0.0)),  # type: ignore[arg-type]
            scanner=kw.pop("scanner", None),  # type: ignore[arg-type]
            ledger=kw.pop("ledger", None),  # type: ignore[arg-type]
            group_members=kw.pop("group_members", None),  # type: ignore[arg-type]
            max_event_age_s=kw.pop("max_event_age_s", None),  # type: ignore[arg-type]
            ambiguous_policy=policy,
        )
        consumer.commit_cb = self.processor.on_commit

    @contextmanager
    def running(self) -> Iterator[Harness]:
        self.sender.start()
        self.processor.subscribe()
        thread = threading.Thread(target=self.processor.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.processor.request_stop()
            thread.join(10)
            self.sender.stop()
            assert not thread.is_alive()


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def recording_handler(
    delivered: list[dict[str, object]], *, latency_s: tuple[float, float] = (0.0, 0.005)
) -> Handler:
    rng = random.Random(7)

    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(rng.uniform(*latency_s))
        delivered.append(json.loads(request.content))
        return httpx.Response(202)

    return handler


def test_per_user_order_under_concurrency_and_nothing_lost() -> None:
    consumer = FakeConsumer("t", partitions=3)
    users = [f"u{i}" for i in range(20)]
    rng = random.Random(1)
    for seq in range(600):
        user = rng.choice(users)
        consumer.append(hash(user) % 3, user.encode(), event(user, seq))
    delivered: list[dict[str, object]] = []
    h = Harness(consumer, recording_handler(delivered, latency_s=(0.0, 0.01)), max_in_flight=16)
    with h.running():
        wait_for(lambda: sum(consumer.committed_offsets.values()) == 600)
    assert len(delivered) == 600
    by_user: dict[object, list[int]] = defaultdict(list)
    for body in delivered:
        by_user[body["user"]].append(int(body["seq"]))  # type: ignore[call-overload]
    for seqs in by_user.values():
        assert seqs == sorted(seqs)


def test_one_partition_with_many_users_fills_the_in_flight_window() -> None:
    consumer = FakeConsumer("t", partitions=1)
    for seq in range(400):
        consumer.append(0, f"u{seq}".encode(), event(f"u{seq}", seq))
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return httpx.Response(202)

    h = Harness(consumer, handler, max_in_flight=32)
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 400)
    assert peak == 32


def test_commits_never_pass_an_undelivered_record() -> None:
    consumer = FakeConsumer("t", partitions=1)
    for seq in range(200):
        consumer.append(0, f"u{seq % 10}".encode(), event(f"u{seq % 10}", seq))
    delivered: set[int] = set()
    violations: list[str] = []

    def check(offsets: list) -> None:  # type: ignore[type-arg]
        for tp in offsets:
            missing = [o for o in range(tp.offset) if o not in delivered]
            if missing:
                violations.append(f"committed {tp.offset} before {missing[:3]}")

    consumer.on_commit = check
    rng = random.Random(3)

    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(rng.uniform(0, 0.01))
        if rng.random() < 0.2:
            return httpx.Response(503)
        delivered.add(int(json.loads(request.content)["seq"]))
        return httpx.Response(202)

    h = Harness(consumer, handler)
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 200)
    assert violations == []
    assert len(consumer.commits) > 1


def test_bad_records_are_dead_lettered_and_good_ones_keep_flowing() -> None:
    consumer = FakeConsumer("t", partitions=1)
    consumer.append(0, b"u1", event("u1", 0))
    consumer.append(0, b"u2", b"")  # empty value: undecodable
    consumer.append(0, b"u3", json.dumps({"type": "identify", "userId": "u3"}).encode())
    consumer.append(0, b"u4", event("u4", 3, reject=True))  # Inkit answers 422
    consumer.append(0, b"u5", json.dumps({"type": "track", "userId": "u5"}).encode())
    consumer.append(0, b"u6", event("u6", 5))
    delivered: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("reject"):
            return httpx.Response(422, json={"error": "address_line_1: too long"})
        delivered.append(body["seq"])
        return httpx.Response(202)

    h = Harness(consumer, handler)
    h.producer.fail_next = 1  # the first dead-letter produce fails: retried, never skipped
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 6)
    assert sorted(delivered) == [0, 5]
    reasons = sorted(
        dict((k, v.decode()) for k, v in p["headers"])["inkit.error.reason"]
        for p in h.producer.produced
    )
    assert reasons == ["empty_value", "http_422", "missing_template_id"]
    headers = dict(h.producer.produced[0]["headers"])
    assert headers["inkit.original.topic"] == b"t"
    assert headers["inkit.original.partition"] == b"0"
    records = h.metrics.records
    assert records.labels("skipped", "not_identify")._value.get() == 1
    assert records.labels("dead_lettered", "http_422")._value.get() == 1
    assert h.metrics.dead_letter_failures._value.get() == 1


def test_retries_are_exhausted_into_the_dead_letter_topic() -> None:
    consumer = FakeConsumer("t", partitions=1)
    consumer.append(0, b"u1", event("u1", 0))

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    h = Harness(consumer, handler, retry_max_s=0.3)
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 1)
    headers = dict(h.producer.produced[0]["headers"])
    assert headers["inkit.error.reason"] == b"retry_exhausted"
    assert headers["inkit.http.status"] == b"503"
    assert h.metrics.retries.labels("server_error")._value.get() >= 2


def test_revoke_drains_in_flight_work_and_commits_it_and_nothing_after() -> None:
    consumer = FakeConsumer("t", partitions=2)
    for seq in range(50):
        consumer.append(seq % 2, f"u{seq}".encode(), event(f"u{seq}", seq))
    release = threading.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        while not release.is_set():
            await asyncio.sleep(0.005)
        return httpx.Response(202)

    h = Harness(consumer, handler, max_in_flight=8)
    with h.running():
        wait_for(lambda: h.metrics.in_flight._value.get() == 8)
        consumer.revoke([1])
        time.sleep(0.1)
        release.set()
        wait_for(lambda: consumer.committed_offsets.get(0) == 25)
        assert consumer.committed_offsets.get(1) == 25  # drained fully during the revoke
    commits_for_1 = [tp for batch in consumer.commits for tp in batch if tp.partition == 1]
    assert commits_for_1[-1].offset == 25


def test_auth_failure_pauses_everything_and_recovers_without_dead_letters() -> None:
    consumer = FakeConsumer("t", partitions=2)
    for seq in range(40):
        consumer.append(seq % 2, f"u{seq}".encode(), event(f"u{seq}", seq))
    key_ok = threading.Event()
    delivered: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if not key_ok.is_set():
            return httpx.Response(401)
        delivered.append(json.loads(request.content)["seq"])
        return httpx.Response(202)

    h = Harness(consumer, handler)
    with h.running():
        wait_for(lambda: h.metrics.auth_blocked._value.get() == 1)
        wait_for(lambda: consumer.paused == {0, 1})
        assert h.metrics.ready._value.get() == 0
        time.sleep(0.3)
        assert h.producer.produced == []
        key_ok.set()
        wait_for(lambda: sum(consumer.committed_offsets.values()) == 40)
        assert h.metrics.auth_blocked._value.get() == 0
    assert sorted(delivered) == list(range(40))
    assert h.producer.produced == []


def test_memory_stays_bounded_by_pausing() -> None:
    consumer = FakeConsumer("t", partitions=1)
    for seq in range(3000):
        consumer.append(0, b"same-user", event("same-user", seq))
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal peak
        peak = max(peak, int(h.metrics.buffered._value.get()))
        return httpx.Response(202)

    h = Harness(consumer, handler, max_buffered=200)
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 3000, timeout_s=30)
    assert peak <= 200 + 500  # the cap plus at most one poll batch


def test_records_finished_above_the_watermark_are_not_sent_again_by_the_next_owner() -> None:
    consumer = FakeConsumer("t", partitions=1)
    for seq in range(6):
        consumer.append(0, f"u{seq}".encode(), event(f"u{seq}", seq))
    # A previous owner committed 2 and recorded that 3 and 5 were finished too.
    consumer.committed_offsets[0] = 2
    consumer.committed_metadata[0] = "done:1,3"
    delivered: list[dict[str, object]] = []
    h = Harness(consumer, recording_handler(delivered))
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 6)
    assert sorted(int(b["seq"]) for b in delivered) == [2, 4]  # type: ignore[call-overload]
    assert h.metrics.records.labels("skipped", "already_done")._value.get() == 2


def test_commit_metadata_lists_what_finished_behind_a_slow_record() -> None:
    consumer = FakeConsumer("t", partitions=1)
    consumer.append(0, b"slow", event("slow", 0, slow=True))
    for seq in range(1, 4):
        consumer.append(0, f"u{seq}".encode(), event(f"u{seq}", seq))
    release = threading.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content).get("slow"):
            while not release.is_set():
                await asyncio.sleep(0.005)
        return httpx.Response(202)

    h = Harness(consumer, handler)
    started_ms = int(time.time() * 1000)
    with h.running():
        wait_for(lambda: decode_metadata(0, consumer.committed_metadata.get(0)).done == {1, 2, 3})
        assert consumer.committed_offsets[0] == 0  # record 0 still flies: nothing passed it
        # ... and since when it was worked on: where the next owner looks for dead letters.
        since = decode_metadata(0, consumer.committed_metadata[0]).since_ms
        assert since is not None
        assert started_ms <= since <= int(time.time() * 1000)
        release.set()
        wait_for(lambda: consumer.committed_offsets.get(0) == 4)
    # Nothing left unfinished: the instant of the last read, so that a record dead-lettered
    # after this commit is looked for by a next owner (issue #13, defect 7).
    idle_since = decode_metadata(4, consumer.committed_metadata[0]).since_ms
    assert idle_since is not None
    assert since <= idle_since <= int(time.time() * 1000)


class FakeScanner:
    """Stands in for DeadLetterScanner: the copies a previous owner left, or a failure."""

    def __init__(self, found: dict[tuple[str, int], set[int]], *, fail: bool = False) -> None:
        self.found = found
        self.fail = fail
        self.calls: list[tuple[int, dict[tuple[str, int], int]]] = []

    def submit(
        self, since_ms: int, committed: Mapping[tuple[str, int], int]
    ) -> Future[dict[tuple[str, int], set[int]]]:
        """Answered at once (the real one answers from its own thread)."""
        self.calls.append((since_ms, dict(committed)))
        future: Future[dict[tuple[str, int], set[int]]] = Future()
        if self.fail:
            future.set_exception(DeadLetterScanError("dead-letter topic unreadable"))
        else:
            future.set_result(self.found)
        return future

    def close(self) -> None:
        pass


def _previous_owner_died_after_one_dead_letter(scanner: FakeScanner) -> Harness:
    consumer = FakeConsumer("t", partitions=1)
    consumer.append(0, b"u0", event("u0", 0))  # delivered and committed by the previous owner
    consumer.append(0, b"u1", b"")  # undecodable: its copy was written, then the owner died
    consumer.append(0, b"u2", b"")  # undecodable: its copy was never written
    consumer.append(0, b"u3", event("u3", 3))
    consumer.committed_offsets[0] = 1
    consumer.committed_metadata[0] = "since:1700000000000"
    return Harness(consumer, recording_handler([]), scanner=scanner)


def test_a_dead_letter_the_previous_owner_wrote_after_its_last_commit_is_not_written_again() -> (
    None
):
    scanner = FakeScanner({("t", 0): {1}})
    h = _previous_owner_died_after_one_dead_letter(scanner)
    with h.running():
        wait_for(lambda: h.consumer.committed_offsets.get(0) == 4)
    assert scanner.calls == [(1700000000000, {("t", 0): 1})]
    written = [dict(p["headers"])["inkit.original.offset"] for p in h.producer.produced]
    assert written == [b"2"]
    assert h.metrics.records.labels("skipped", "already_dead_lettered")._value.get() == 1
    assert h.metrics.dead_letter_scans.labels("ok")._value.get() == 1


def test_when_the_dead_letter_topic_cannot_be_read_back_the_copy_is_written_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given up at the first failure here (DLQ_SCAN_PATIENCE_S; test_scan_gate.py waits).
    monkeypatch.setattr(scan_gate, "DLQ_SCAN_PATIENCE_S", 0.0)
    h = _previous_owner_died_after_one_dead_letter(FakeScanner({}, fail=True))
    with h.running():
        wait_for(lambda: h.consumer.committed_offsets.get(0) == 4)
    written = [dict(p["headers"])["inkit.original.offset"] for p in h.producer.produced]
    assert written == [b"1", b"2"]  # at least once: a duplicate, never a loss
    assert h.metrics.dead_letter_scans.labels("failed")._value.get() == 1


def test_an_unreachable_registry_holds_the_partition_in_order_and_dead_letters_nothing() -> None:
    consumer = FakeConsumer("t", partitions=1)
    for seq in range(20):
        consumer.append(0, b"same-user", event("same-user", seq))
    delivered: list[dict[str, object]] = []
    h = Harness(consumer, recording_handler(delivered))
    decoder = h.processor._decoder
    outage = {"left": 3}

    class FlakyRegistryDecoder:
        def decode(self, value: bytes | None) -> SegmentMessage:
            if outage["left"] > 0:
                outage["left"] -= 1
                raise RegistryUnavailable("registry down")
            return decoder.decode(value)

    h.processor._decoder = FlakyRegistryDecoder()
    h.processor._backoff = Backoff(base_s=0.01, max_s=0.02)
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 20)
    assert [int(b["seq"]) for b in delivered] == list(range(20))  # type: ignore[call-overload]
    assert h.producer.produced == []
    assert h.metrics.retries.labels("registry_unavailable")._value.get() == 3


def test_while_kafka_cannot_take_commits_at_most_max_uncommitted_records_are_sent() -> None:
    consumer = FakeConsumer("t", partitions=2)
    for seq in range(400):
        consumer.append(seq % 2, f"u{seq}".encode(), event(f"u{seq}", seq))
    consumer.commits_fail = True
    delivered: list[dict[str, object]] = []
    h = Harness(consumer, recording_handler(delivered), max_in_flight=16, max_uncommitted=40)
    with h.running():
        wait_for(lambda: len(delivered) >= 40)
        time.sleep(0.5)  # commits keep failing: nothing more may go out meanwhile
        assert len(delivered) == 40  # what a crash now could send twice
        assert h.metrics.uncommitted._value.get() == 40
        consumer.commits_fail = False  # Kafka is back: commits land, sending resumes
        wait_for(lambda: sum(consumer.committed_offsets.values()) == 400)
    assert len(delivered) == 400


def test_the_cap_on_uncommitted_records_does_not_slow_a_healthy_pipeline() -> None:
    consumer = FakeConsumer("t", partitions=1)
    for seq in range(2000):
        consumer.append(0, f"u{seq}".encode(), event(f"u{seq}", seq))
    delivered: list[dict[str, object]] = []
    h = Harness(
        consumer,
        recording_handler(delivered),
        max_in_flight=16,
        max_uncommitted=32,
        commit_interval_s=60.0,
    )
    with h.running():
        # Commits go out early (before the interval) whenever half the cap is reached; without
        # that, 32 records a minute would go out.
        wait_for(lambda: len(delivered) == 2000, timeout_s=30)
    assert consumer.committed_offsets[0] == 2000  # the rest at shutdown


def test_a_partition_its_previous_owner_still_drains_is_read_from_that_owners_last_commit() -> None:
    consumer = FakeConsumer("t", partitions=1)
    for seq in range(10):
        consumer.append(0, f"u{seq}".encode(), event(f"u{seq}", seq))
    # The previous owner committed 2, announced its drain, and is still delivering 2..5.
    until = int((time.time() + 30) * 1000)
    consumer.committed_offsets[0] = 2
    consumer.committed_metadata[0] = f"drain:{until}"
    delivered: list[dict[str, object]] = []
    h = Harness(consumer, recording_handler(delivered))
    with h.running():
        time.sleep(0.5)
        assert delivered == []  # nothing read while the previous owner drains
        # Its final commit lands: 2..5 delivered, and 7 finished above them.
        consumer.committed_offsets[0] = 6
        consumer.committed_metadata[0] = "done:1"
        wait_for(lambda: consumer.committed_offsets.get(0) == 10)
    assert sorted(int(b["seq"]) for b in delivered) == [6, 8, 9]  # type: ignore[call-overload]


def test_an_announced_drain_that_never_ends_is_waited_for_only_while_its_owner_is_there() -> None:
    consumer = FakeConsumer("t", partitions=1)
    for seq in range(4):
        consumer.append(0, f"u{seq}".encode(), event(f"u{seq}", seq))
    consumer.committed_offsets[0] = 1
    until = int((time.time() + 30) * 1000)
    consumer.committed_metadata[0] = f"drain:{until};by:old-owner"  # then it crashed
    delivered: list[dict[str, object]] = []

    def members() -> Future[list[str]]:
        future: Future[list[str]] = Future()
        future.set_result([consumer.member_id])  # the old owner has left the group
        return future

    h = Harness(consumer, recording_handler(delivered), group_members=members)
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 4)
    assert sorted(int(b["seq"]) for b in delivered) == [1, 2, 3]  # type: ignore[call-overload]


def test_a_revoke_announces_the_drain_before_the_final_commit() -> None:
    consumer = FakeConsumer("t", partitions=1)
    for seq in range(3):
        consumer.append(0, f"u{seq}".encode(), event(f"u{seq}", seq))
    h = Harness(consumer, recording_handler([]))

    def announced() -> list[bool]:
        return [
            decode_metadata(tp.offset, tp.metadata).draining_until_ms is not None
            for c in consumer.commits
            for tp in c
        ]

    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 3)
        assert not any(announced())
        consumer.revoke([0])
        # The announcement, then the final commit that clears it.
        wait_for(lambda: any(announced()) and not announced()[-1])
    flags = announced()
    assert True in flags
    assert flags[-1] is False


def test_a_dead_sender_thread_ends_the_loop_with_an_error() -> None:
    consumer = FakeConsumer("t", partitions=1)
    consumer.append(0, b"u", event("u", 0))

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202)

    h = Harness(consumer, handler)
    h.sender.start()
    h.processor.subscribe()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            h.processor.run()
        except ConsumerError as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for(lambda: consumer.committed_offsets.get(0) == 1)
    h.sender._loop.call_soon_threadsafe(h.sender._loop.stop)  # the loop thread ends
    thread.join(10)
    assert not thread.is_alive()
    assert failures
    assert "sender thread died" in str(failures[0])
