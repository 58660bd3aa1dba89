"""RedriveProcessor against the in-memory consumer: it stops by itself at the end offsets found
at start, never reads what was written after, commits past what its filters leave out, leaves
what --limit leaves for the next run, and writes what fails again back with its attempt."""

from __future__ import annotations

import json
import threading

import httpx
from prometheus_client import CollectorRegistry

from connector.delivery.redrive import RedrivePlan, RedriveProcessor, release_chosen_intent
from connector.delivery.selection import Selection
from connector.inkit.client import InkitClient
from connector.inkit.retry import Backoff
from connector.inkit.sender import Sender
from connector.kafka.dead_letter import redrive_headers
from connector.kafka.dlq import DeadLetterQueue
from connector.observability.metrics import Metrics
from tests.fakes import FakeConsumer, FakeMessage, FakeProducer, JsonDecoder, SimpleMapper

DLQ = "identify.dlq"


def add_letter(consumer: FakeConsumer, partition: int, user: str, reason: str) -> None:
    """A dead letter of `run`: the original bytes and key, the reason in its headers."""
    records = consumer.log.setdefault(partition, [])
    value = json.dumps(
        {"type": "identify", "userId": user, "traits": {"template_id": "t", "who": user}}
    ).encode()
    headers = [
        ("inkit.original.topic", b"identify"),
        ("inkit.original.partition", b"0"),
        ("inkit.original.offset", str(len(records)).encode()),
        ("inkit.error.reason", reason.encode()),
    ]
    records.append(FakeMessage(DLQ, partition, len(records), user.encode(), value, 1, headers))


def plan_of(consumer: FakeConsumer) -> RedrivePlan:
    ends = {p: len(consumer.log.get(p, [])) for p in range(consumer.partitions)}
    starts = {p: consumer.committed_offsets.get(p, 0) for p in ends}
    return RedrivePlan(DLQ, starts, ends)


class Redrive:
    """One redrive over ``consumer``; Inkit answers 422 for the users in ``refuse``."""

    def __init__(
        self,
        consumer: FakeConsumer,
        *,
        selection: Selection = Selection(),  # noqa: B008 - frozen
        limit: int | None = None,
        refuse: frozenset[str] = frozenset(),
    ) -> None:
        self.metrics = Metrics(CollectorRegistry())
        self.producer = FakeProducer()
        self.sent: list[str] = []

        async def handler(request: httpx.Request) -> httpx.Response:
            user = json.loads(request.content)["user"]
            if user in refuse:
                return httpx.Response(422)
            self.sent.append(user)
            return httpx.Response(202)

        def client() -> InkitClient:
            http = httpx.MockTransport(handler)
            return InkitClient(http, self.metrics)

        self.sender = Sender(
            client, self.metrics, retry_max_s=5.0, backoff=Backoff(base_s=0.01, max_s=0.05)
        )
        self.processor = RedriveProcessor(
            plan=plan_of(consumer),
            selection=selection,
            limit=limit,
            consumer=consumer,
            decoder=JsonDecoder(),
            mapper=SimpleMapper(),
            sender=self.sender,
            dlq=DeadLetterQueue(self.producer, DLQ, self.metrics, "g", headers_of=redrive_headers),
            metrics=self.metrics,
            topic=DLQ,
            max_in_flight=4,
            max_buffered=100,
            drain_timeout_s=5.0,
            commit_interval_s=0.0,
        )
        consumer.commit_cb = self.processor.on_commit

    def run(self) -> RedriveProcessor:
        """Run to its own stop (the test fails if it does not stop by itself)."""
        self.sender.start()
        self.processor.subscribe()
        thread = threading.Thread(target=self.processor.run, daemon=True)
        thread.start()
        thread.join(20)
        stuck = thread.is_alive()
        if stuck:
            self.processor.request_stop()
            thread.join(10)
        self.sender.stop()
        assert not stuck, "the redrive did not stop at its end"
        return self.processor


def test_it_stops_at_the_end_found_at_start_and_commits_past_what_it_leaves_out() -> None:
    consumer = FakeConsumer(DLQ, partitions=2)
    for n in range(6):
        add_letter(consumer, n % 2, f"u{n}", "http_422" if n < 4 else "invalid_avro")
    redrive = Redrive(consumer, selection=Selection(reasons=frozenset({"http_422"})))
    add_letter(consumer, 0, "late", "http_422")  # written after the start: not this run's
    processor = redrive.run()
    assert processor.completed
    assert sorted(redrive.sent) == ["u0", "u1", "u2", "u3"]
    assert processor.tally.resent == {"http_422": 4}
    assert processor.tally.not_selected == 2
    assert consumer.committed_offsets == {0: 3, 1: 3}  # not past the late record


def test_limit_stops_after_n_and_leaves_the_rest_for_the_next_run() -> None:
    consumer = FakeConsumer(DLQ, partitions=1)
    for n in range(5):
        add_letter(consumer, 0, f"u{n}", "http_422")
    first = Redrive(consumer, limit=2)
    assert first.run().completed
    assert first.sent == ["u0", "u1"]
    assert consumer.committed_offsets == {0: 2}

    again = FakeConsumer(DLQ, partitions=1, log=consumer.log)
    again.committed_offsets = dict(consumer.committed_offsets)
    second = Redrive(again)
    assert second.run().tally.resent == {"http_422": 3}
    assert second.sent == ["u2", "u3", "u4"]


def test_what_fails_again_goes_back_with_its_attempt_and_new_reason() -> None:
    consumer = FakeConsumer(DLQ, partitions=1)
    add_letter(consumer, 0, "ok", "retry_exhausted")
    add_letter(consumer, 0, "still-bad", "retry_exhausted")
    redrive = Redrive(consumer, refuse=frozenset({"still-bad"}))
    processor = redrive.run()
    assert processor.tally.resent == {"retry_exhausted": 1}
    assert processor.tally.failed == {"http_422": 1}
    (copy,) = redrive.producer.produced
    headers = dict(copy["headers"])
    assert headers["inkit.redrive.attempt"] == b"1"
    assert headers["inkit.error.reason"] == b"http_422"
    assert headers["inkit.original.offset"] == b"1"
    assert consumer.committed_offsets == {0: 2}


def test_nothing_to_read_returns_at_once_without_joining_the_group() -> None:
    consumer = FakeConsumer(DLQ, partitions=1)
    redrive = Redrive(consumer)
    processor = redrive.processor
    assert processor.completed
    processor.run()
    assert consumer.commits == []


class FakeLedger:
    """The sent-ledger's lookups, and the intents it closed."""

    def __init__(self, sent: set[str], intents: set[str]) -> None:
        self.sent, self.intents, self.resolved = sent, intents, []  # type: ignore[var-annotated]

    def already_sent(self, identity: str) -> bool:
        return identity in self.sent

    def open_intent(self, identity: str) -> bool:
        return identity in self.intents

    def resolve(self, identity: str) -> None:
        self.resolved.append(identity)


def test_a_chosen_ambiguous_send_is_released_but_never_over_a_sent_record() -> None:
    ledger = FakeLedger(sent={"m-sent"}, intents={"m-sent", "m-open"})
    assert release_chosen_intent(ledger, "m-open")
    # Known as sent: a tombstone would let compaction forget it, and the redrive skips it anyway.
    assert not release_chosen_intent(ledger, "m-sent")
    assert not release_chosen_intent(ledger, "m-unknown")
    assert ledger.resolved == ["m-open"]
