"""The Schema Registry stand-in, driven by confluent-kafka's real client and (de)serializers."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from connector.testing.schema_registry import CONTENT_TYPE, SchemaRegistry

pytestmark = pytest.mark.integration

PERSON = json.dumps(
    {
        "type": "record",
        "name": "Person",
        "namespace": "test.registry",
        "fields": [
            {"name": "user_id", "type": "string"},
            {"name": "age", "type": ["null", "int"], "default": None},
            {"name": "traits", "type": {"type": "map", "values": "string"}, "default": {}},
        ],
    }
)
CONTEXT = SerializationContext("people", MessageField.VALUE)
SUBJECT = "people-value"


ClientFactory = Callable[..., SchemaRegistryClient]


@pytest.fixture
def client() -> Iterator[ClientFactory]:
    """Makes real clients (closed at teardown) for a registry, with extra client config."""
    made: list[SchemaRegistryClient] = []

    def make(registry: SchemaRegistry, **conf: object) -> SchemaRegistryClient:
        # No retries: a failing call should fail now, not after the client's backoff.
        made.append(SchemaRegistryClient({"url": registry.url, "max.retries": 0, **conf}))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_real_client_round_trip(schema_registry: SchemaRegistry, client: ClientFactory) -> None:
    writer = client(schema_registry)
    schema_id = writer.register_schema(SUBJECT, Schema(PERSON, "AVRO"))
    assert writer.register_schema(SUBJECT, Schema(PERSON, "AVRO")) == schema_id
    # The same schema, formatted differently, is the same schema.
    assert schema_registry.register("other-value", json.dumps(json.loads(PERSON), indent=2)) == (
        schema_id
    )

    record = {"user_id": "u-1", "age": 36, "traits": {"first_name": "Ada"}}
    payload = AvroSerializer(writer, PERSON)(record, CONTEXT)
    assert payload is not None
    assert payload[0] == 0
    assert int.from_bytes(payload[1:5], "big") == schema_id

    # A fresh client has no cache, so the deserializer must fetch the schema by id over HTTP.
    assert AvroDeserializer(client(schema_registry))(payload, CONTEXT) == record

    reader = client(schema_registry)
    assert sorted(reader.get_subjects()) == ["other-value", SUBJECT]
    assert reader.get_versions(SUBJECT) == [1]
    latest = reader.get_latest_version(SUBJECT)
    assert (latest.schema_id, latest.version) == (schema_id, 1)
    assert reader.lookup_schema(SUBJECT, Schema(PERSON, "AVRO")).schema_id == schema_id
    assert {v.subject for v in reader.get_schema_versions(schema_id)} == {SUBJECT, "other-value"}
    assert reader.get_compatibility() == "BACKWARD"
    reader.set_compatibility(SUBJECT, "NONE")
    assert reader.get_compatibility(SUBJECT) == "NONE"


def test_a_new_schema_is_a_new_version(
    schema_registry: SchemaRegistry, client: ClientFactory
) -> None:
    evolved = json.loads(PERSON)
    evolved["fields"].append({"name": "email", "type": ["null", "string"], "default": None})
    first = schema_registry.register(SUBJECT, PERSON)
    second = schema_registry.register(SUBJECT, json.dumps(evolved))
    assert second != first
    reader = client(schema_registry)
    assert reader.get_versions(SUBJECT) == [1, 2]
    assert reader.get_version(SUBJECT, 1).schema_id == first


def test_basic_auth(client: ClientFactory) -> None:
    with SchemaRegistry(basic_auth="svc:s3cret") as registry:
        good = client(registry, **{"basic.auth.user.info": "svc:s3cret"})
        schema_id = good.register_schema(SUBJECT, Schema(PERSON, "AVRO"))
        assert schema_id == 1
        for conf in ({"basic.auth.user.info": "svc:wrong"}, {}):
            with pytest.raises(SchemaRegistryError) as failure:
                client(registry, **conf).get_schema(schema_id)
            assert failure.value.http_status_code == 401


def test_unknown_schema_id_is_40403(schema_registry: SchemaRegistry, client: ClientFactory) -> None:
    with pytest.raises(SchemaRegistryError) as failure:
        client(schema_registry).get_schema(12345)
    assert (failure.value.http_status_code, failure.value.error_code) == (404, 40403)
    response = httpx.get(schema_registry.url + "/schemas/ids/12345")
    assert response.status_code == 404
    assert response.headers["content-type"] == CONTENT_TYPE
    assert response.json()["error_code"] == 40403


def test_unknown_subject_is_40401(schema_registry: SchemaRegistry, client: ClientFactory) -> None:
    with pytest.raises(SchemaRegistryError) as failure:
        client(schema_registry).get_latest_version("nobody-value")
    assert failure.value.error_code == 40401


def test_invalid_schema_is_422(schema_registry: SchemaRegistry, client: ClientFactory) -> None:
    with pytest.raises(SchemaRegistryError) as failure:
        client(schema_registry).register_schema(SUBJECT, Schema('{"type": "nope"}', "AVRO"))
    assert (failure.value.http_status_code, failure.value.error_code) == (422, 42201)


def test_unavailable_answers_503(schema_registry: SchemaRegistry, client: ClientFactory) -> None:
    schema_id = schema_registry.register(SUBJECT, PERSON)
    schema_registry.set_unavailable(True)
    assert httpx.get(schema_registry.url + "/subjects").status_code == 503
    with pytest.raises(SchemaRegistryError) as failure:
        client(schema_registry).get_schema(schema_id)
    assert failure.value.http_status_code == 503
    schema_registry.set_unavailable(False)
    assert client(schema_registry).get_schema(schema_id).schema_str == PERSON


def test_stopped_registry_is_unreachable_even_on_a_kept_alive_connection() -> None:
    registry = SchemaRegistry()
    registry.start()
    with httpx.Client(timeout=2.0) as http:
        assert http.get(registry.url + "/subjects").status_code == 200
        registry.stop()
        with pytest.raises(httpx.TransportError):
            http.get(registry.url + "/subjects")


def test_cli_runs_until_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.testing.schema_registry", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", proc.stderr.readline())
        assert match
        assert httpx.get(match.group(1) + "/subjects").json() == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
