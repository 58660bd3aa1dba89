"""The producer's own Avro, end to end: every corpus schema is registered (with its references)
and serialized by confluent-kafka's own AvroSerializer, produced to the real broker, read by the
real connector process through the Schema Registry stand-in, and must reach the Inkit simulator
as exactly the requests the same events make as Segment JSON (and as confluent-json)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import (
    Schema,
    SchemaReference,
    SchemaRegistryClient,
    topic_record_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connector.events import avro
from connector.events.encoding import build_encoder
from connector.testing.inkit_simulator import InkitSimulator
from connector.testing.schema_registry import SchemaRegistry
from tests.fixtures.corpus import CORPUS, CORPUS_DIR, to_datum
from tests.fixtures.simulator import SIMULATOR_API_KEY
from tests.integration.harness import (
    ConnectorProcess,
    connector_env,
    dlq_headers,
    produce,
    read_all,
    wait_until,
)

pytestmark = pytest.mark.integration

EVENTS = [event for case in CORPUS for event in case.events]
# Writers whose records are not an Identify: dead-lettered with these reasons.
NO_TYPE = {
    "type": "record",
    "name": "NoType",
    "namespace": "com.acme.bad",
    "fields": [{"name": "userId", "type": "string"}],
}
TRAITS_NUMBER = {
    "type": "record",
    "name": "TraitsNumber",
    "namespace": "com.acme.bad",
    "fields": [
        {"name": "type", "type": "string"},
        {"name": "userId", "type": "string"},
        {"name": "traits", "type": "long"},
    ],
}


@pytest.fixture
def simulators() -> Iterator[Callable[[], InkitSimulator]]:
    """Makes extra simulators, one per connector process, so each run's requests stay apart."""
    made: list[InkitSimulator] = []

    def make() -> InkitSimulator:
        made.append(InkitSimulator(api_key=SIMULATOR_API_KEY, seed=0))
        made[-1].start()
        return made[-1]

    yield make
    for simulator in made:
        simulator.stop()


def avro_records(registry: SchemaRegistry, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every corpus event, serialized as a producer would: Confluent's AvroSerializer,
    auto-registering under TopicRecordNameStrategy (both versions of the CRM schema land in one
    subject), references registered first under their own subject."""
    client = SchemaRegistryClient({"url": registry.url, "max.retries": 0})
    context = SerializationContext(topic, MessageField.VALUE)
    conf = {
        "auto.register.schemas": True,
        "subject.name.strategy": topic_record_subject_name_strategy,
    }
    records: list[tuple[bytes | None, bytes | None]] = []
    for case in CORPUS:
        refs = []
        for subject, ref_file in case.references:
            client.register_schema(subject, Schema((CORPUS_DIR / ref_file).read_text(), "AVRO"))
            refs.append(SchemaReference(subject, subject, 1))
        serializer = AvroSerializer(client, Schema(case.schema_text(), "AVRO", refs), conf=conf)
        parsed = case.parsed()
        for event in case.events:
            value = serializer(to_datum(event, parsed), context)
            records.append((str(event.get("userId")).encode(), value))
    for writer, datum in (
        (NO_TYPE, {"userId": "bad-1"}),
        (TRAITS_NUMBER, {"type": "identify", "userId": "bad-2", "traits": 7}),
    ):
        serializer = AvroSerializer(client, json.dumps(writer), conf=conf)
        records.append((b"bad", serializer(datum, context)))
    client.close()
    return records


def requests_by_message(simulator: InkitSimulator) -> dict[str, str]:
    return {
        str(r.body["segment_message_id"]): json.dumps(r.body, sort_keys=True)
        for r in simulator.requests()
    }


@pytest.mark.timeout(300)
def test_corpus_end_to_end_matches_the_json_path(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    schema_registry: SchemaRegistry,
    simulators: Callable[[], InkitSimulator],
    tmp_path: Path,
) -> None:
    runs: dict[str, tuple[str, str, InkitSimulator]] = {
        fmt: (topic_factory(), topic_factory(), simulators())
        for fmt in ("confluent-avro", "json", "confluent-json")
    }
    avro_topic = runs["confluent-avro"][0]
    produce(kafka_bootstrap, avro_topic, [], raw=avro_records(schema_registry, avro_topic))
    produce(kafka_bootstrap, runs["json"][0], EVENTS, fmt="json")
    client = avro.SchemaRegistry(schema_registry.url)
    encoder = build_encoder("confluent-json", registry=client, topic=runs["confluent-json"][0])
    raw = [(b"k", encoder.encode(event)) for event in EVENTS]
    encoder.close()
    produce(kafka_bootstrap, runs["confluent-json"][0], [], raw=raw)

    connectors = [
        ConnectorProcess(
            connector_env(
                kafka_bootstrap,
                topic,
                dlq,
                simulator,
                f"g-{uuid.uuid4().hex[:8]}",
                KAFKA_VALUE_FORMAT=fmt,
                SCHEMA_REGISTRY_URL=schema_registry.url,
                INKIT_TEMPLATE_ID="tmpl_corpus",
            ),
            tmp_path,
            name=fmt,
        ).start()
        for fmt, (topic, dlq, simulator) in runs.items()
    ]
    try:

        def all_delivered() -> bool:
            for connector in connectors:
                connector.assert_running()
            return all(len(sim.requests()) >= len(EVENTS) for _, _, sim in runs.values())

        wait_until(all_delivered, 180, "\n".join(c.log_tail(15) for c in connectors))
        dead = read_all(kafka_bootstrap, runs["confluent-avro"][1], timeout_s=30)
    finally:
        for connector in connectors:
            connector.stop()

    from_json = requests_by_message(runs["json"][2])
    assert len(from_json) == len(EVENTS) == len(runs["json"][2].requests())
    for fmt in ("confluent-avro", "confluent-json"):
        received = requests_by_message(runs[fmt][2])
        assert len(runs[fmt][2].requests()) == len(EVENTS)
        for message_id, body in from_json.items():
            assert received.get(message_id) == body, f"{fmt}: {message_id}"
    reasons = sorted(dlq_headers(record)["inkit.error.reason"] for record in dead)
    assert reasons == ["missing_type", "type_mismatch"]
