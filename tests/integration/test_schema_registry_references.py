"""The Schema Registry stand-in serves Confluent schema references to the real client."""

from __future__ import annotations

import json

import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from connector.testing.schema_registry import INVALID_SCHEMA, SchemaRegistry
from tests.fixtures.corpus import CORPUS, CORPUS_DIR

pytestmark = pytest.mark.integration

CASE = next(case for case in CORPUS if case.references)
ADDRESS_SUBJECT, ADDRESS_FILE = CASE.references[0]


def test_references_are_stored_served_and_checked(schema_registry: SchemaRegistry) -> None:
    client = SchemaRegistryClient({"url": schema_registry.url, "max.retries": 0})
    try:
        identify = Schema(
            CASE.schema_text(), "AVRO", [SchemaReference(ADDRESS_SUBJECT, ADDRESS_SUBJECT, 1)]
        )
        # The reference is not registered yet: the schema cannot be parsed, as in Confluent's.
        with pytest.raises(SchemaRegistryError) as info:
            client.register_schema("identify-value", identify)
        assert info.value.error_code == INVALID_SCHEMA
        client.register_schema(ADDRESS_SUBJECT, Schema((CORPUS_DIR / ADDRESS_FILE).read_text()))
        schema_id = client.register_schema("identify-value", identify)
        fresh = SchemaRegistryClient({"url": schema_registry.url, "max.retries": 0})
        served = fresh.get_schema(schema_id)
        fresh.close()
        assert [(r.name, r.subject, r.version) for r in served.references] == [
            (ADDRESS_SUBJECT, ADDRESS_SUBJECT, 1)
        ]
        assert json.loads(served.schema_str) == json.loads(CASE.schema_text())
        # The direct (no HTTP) registration takes references too, and finds the same id.
        refs = [{"name": ADDRESS_SUBJECT, "subject": ADDRESS_SUBJECT, "version": 1}]
        assert schema_registry.register("other-value", CASE.schema_text(), references=refs) == (
            schema_id
        )
    finally:
        client.close()
