"""Intents (AMBIGUOUS_SEND_POLICY=dead-letter): a send goes only after its intent is durable in the
sent-ledger; an intent closes with the sent record, with a tombstone when nothing reached Inkit,
and stays open when the outcome is unknown, so that the next owner, after a crash mid-send,
dead-letters the record as ambiguous_send instead of sending it a second time. In-memory consumer
and producer; the chaos run (tests/reliability/test_chaos.py) repeats it with kill -9."""

from __future__ import annotations

import asyncio
import json

import httpx
from prometheus_client import CollectorRegistry

from connector.delivery.breaker import CircuitBreaker
from connector.kafka.ledger import SentLedger
from connector.models import AmbiguousPolicy
from connector.observability.metrics import Metrics
from tests.fakes import FakeConsumer, FakeLedgerTopic, FakeProducer
from tests.unit.delivery.test_ledger import identify
from tests.unit.delivery.test_processor import Harness, wait_for

LEDGER = "t.sent"
DEAD_LETTER = AmbiguousPolicy.DEAD_LETTER


def new_ledger(
    metrics: Metrics, producer: FakeProducer, *, after: FakeProducer | None
) -> SentLedger:
    """A member's ledger: built on ``producer``, loaded from what ``after`` (the previous owner's
    producer) wrote to the ledger topic, as a restarted member reads it."""
    source = after or FakeProducer()
    ledger = SentLedger(
        producer=producer,
        consumer_factory=lambda: FakeLedgerTopic(source, LEDGER),
        topic=LEDGER,
        window_s=3600.0,
        metrics=metrics,
        group_id="g",
    )
    ledger.load()
    return ledger


def owner(
    consumer: FakeConsumer,
    handler: object,
    policy: AmbiguousPolicy = DEAD_LETTER,
    previous: FakeProducer | None = None,
    **kw: object,
) -> Harness:
    h = Harness(consumer, handler, ambiguous_policy=policy, drain_timeout_s=0.3, **kw)  # type: ignore[arg-type]
    h.processor._ledger = new_ledger(h.metrics, h.producer, after=previous)
    h.processor._intents = policy is DEAD_LETTER
    return h


def ledger_values(producer: FakeProducer, key: bytes) -> list[bytes | None]:
    return [r["value"] for r in producer.produced if r["topic"] == LEDGER and r["key"] == key]


def dead_letters(producer: FakeProducer) -> dict[bytes, str]:
    return {
        r["key"]: dict(r["headers"])["inkit.error.reason"].decode()
        for r in producer.produced
        if r["topic"] == "t.dlq"
    }


def seq_of(request: httpx.Request) -> int:
    return int(json.loads(request.content)["seq"])


def test_no_request_goes_before_its_intent_is_durable() -> None:
    consumer = FakeConsumer("t", partitions=1)
    consumer.append(0, b"u", identify("u", 0, "m-0"))
    sent: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(seq_of(request))
        return httpx.Response(202)

    h = owner(consumer, handler)
    h.producer.fail_next = 10**6  # the ledger topic cannot be written
    failed = h.metrics.ledger_writes.labels("failed")
    with h.running():
        wait_for(lambda: failed._value.get() >= 3, timeout_s=20)  # retried every second
        assert sent == []
        assert consumer.committed_offsets.get(0, 0) == 0


def test_an_intent_is_closed_by_the_send_by_a_tombstone_or_left_open() -> None:
    consumer = FakeConsumer("t", partitions=1)
    for seq in range(3):
        consumer.append(0, f"u{seq}".encode(), identify(f"u{seq}", seq, f"m-{seq}"))
    calls: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seq = seq_of(request)
        calls.append(seq)
        if seq == 1:
            return httpx.Response(422, json={"error": "bad template"})  # answered: no letter
        if seq == 2:
            raise httpx.ReadTimeout("no answer", request=request)  # maybe a letter
        return httpx.Response(202)

    h = owner(consumer, handler)
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == 3)
    assert sorted(calls) == [0, 1, 2]  # the ambiguous one once: never retried
    m0, m1, m2 = (ledger_values(h.producer, f"m-{i}".encode()) for i in range(3))
    assert [v[:1] if v else v for v in m0] == [b"i", b"{"]  # intent, then the sent record
    assert [v[:1] if v else v for v in m1] == [b"i", None]  # intent, then a tombstone
    assert [v[:1] if v else v for v in m2] == [b"i"]  # still open: the outcome is unknown
    assert dead_letters(h.producer) == {b"u1": "http_422", b"u2": "ambiguous_send"}
    assert h.metrics.ambiguous_sends.labels("dead-letter", "dead_lettered")._value.get() == 1


def crash_mid_send(policy: AmbiguousPolicy, events: int = 1) -> tuple[FakeProducer, list[int]]:
    """The first owner sends m-0 (.. m-<events-1>) and dies before Inkit answers (nothing
    committed)."""
    consumer = FakeConsumer("t", partitions=1)
    for seq in range(events):
        consumer.append(0, f"u{seq}".encode(), identify(f"u{seq}", seq, f"m-{seq}"))
    arrived: list[int] = []

    async def hangs(request: httpx.Request) -> httpx.Response:
        arrived.append(seq_of(request))
        await asyncio.sleep(60)  # Inkit got it; the answer never comes back
        return httpx.Response(202)

    first = owner(consumer, hangs, policy, max_in_flight=64)
    with first.running():
        wait_for(lambda: len(arrived) == events)
    assert consumer.committed_offsets.get(0, 0) == 0
    return first.producer, sorted(arrived)


def second_owner(
    policy: AmbiguousPolicy, previous: FakeProducer, events: int = 1, breaker: bool = False
) -> tuple[Harness, list[int]]:
    """The next owner reads the first one's events again (never committed) and one more."""
    consumer = FakeConsumer("t", partitions=1)
    for seq in range(events + 1):
        consumer.append(0, f"u{seq}".encode(), identify(f"u{seq}", seq, f"m-{seq}"))
    sent: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(seq_of(request))
        return httpx.Response(202)

    h = owner(consumer, handler, policy, previous, max_in_flight=64)
    if breaker:  # the defaults of BREAKER_MIN_FAILURES and BREAKER_FAILURE_RATIO
        h.processor._breaker = CircuitBreaker(min_failures=20, failure_ratio=0.5)
    with h.running():
        wait_for(lambda: consumer.committed_offsets.get(0) == events + 1)
    return h, sorted(sent)


def test_after_a_crash_mid_send_the_next_owner_dead_letters_instead_of_sending_again() -> None:
    previous, arrived = crash_mid_send(DEAD_LETTER)
    assert [v[:1] for v in ledger_values(previous, b"m-0") if v] == [b"i"]
    h, sent = second_owner(DEAD_LETTER, previous)
    assert arrived + sent == [0, 1]  # m-0 reached Inkit once, never twice
    assert dead_letters(h.producer) == {b"u0": "ambiguous_send"}
    assert h.metrics.ambiguous_sends.labels("dead-letter", "open_intent")._value.get() == 1


def test_under_resend_no_intent_is_written_and_the_next_owner_sends_again() -> None:
    previous, arrived = crash_mid_send(AmbiguousPolicy.RESEND)
    assert ledger_values(previous, b"m-0") == []  # no cost on the default path
    h, sent = second_owner(AmbiguousPolicy.RESEND, previous)
    assert arrived + sorted(sent) == [0, 0, 1]  # at least once: the letter may go twice
    assert dead_letters(h.producer) == {}


def test_a_crash_with_many_sends_in_flight_does_not_trip_the_circuit_breaker() -> None:
    # Found by the chaos run: after a kill, up to MAX_UNCOMMITTED_RECORDS open intents are
    # dead-lettered in a burst; held by the breaker, they were probed (dead-lettered again,
    # never delivered) and delivery stalled for good.
    previous, arrived = crash_mid_send(DEAD_LETTER, events=40)
    h, sent = second_owner(DEAD_LETTER, previous, events=40, breaker=True)
    assert arrived == list(range(40))
    assert sent == [40]
    assert len(dead_letters(h.producer)) == 40
    assert set(dead_letters(h.producer).values()) == {"ambiguous_send"}
    assert h.metrics.breaker_trips.labels("ambiguous_send")._value.get() == 0


def test_a_resolved_intent_lets_the_record_be_sent_again() -> None:
    # What the redrive command does for an ambiguous_send dead letter a person chose to send.
    previous, _arrived = crash_mid_send(DEAD_LETTER)
    redrive = FakeProducer()
    ledger = new_ledger(Metrics(CollectorRegistry()), redrive, after=previous)
    assert ledger.open_intent("m-0")
    answers: list[bool] = []
    ledger.resolve("m-0", answers.append)
    redrive.poll(0)
    assert answers == [True]
    assert not ledger.open_intent("m-0")
    ledger.close()
    for record in redrive.produced:  # the redrive's tombstone lands in the same topic
        previous.produced.append(record)
    h, sent = second_owner(DEAD_LETTER, previous)
    assert sent == [0, 1]
    assert dead_letters(h.producer) == {}
