"""Confluent JSON Schema wire format: header checked against the registry, body read as JSON."""

from __future__ import annotations

import json

import pytest

from connector.errors import ConfigError, DecodeError, RegistryUnavailable
from connector.events import avro
from connector.events.decoding import (
    ConfluentJsonDecoder,
    DecodeReason,
    JsonDecoder,
    build_decoder,
)
from connector.events.encoding import IDENTIFY_JSON_SCHEMA, build_encoder
from connector.settings import Settings
from tests.unit.fake_registry import REGISTRY_URL, FakeRegistry

EVENT = {
    "type": "identify",
    "userId": "u-1",
    "messageId": "m-1",
    "traits": {"first_name": "Ada", "logins": 3, "vip": True, "tags": ["a"]},
}


def reason(decoder: ConfluentJsonDecoder, value: bytes | None) -> str:
    with pytest.raises(DecodeError) as info:
        decoder.decode(value)
    return info.value.reason


@pytest.fixture
def fake() -> FakeRegistry:
    registry = FakeRegistry()
    registry.add(IDENTIFY_JSON_SCHEMA, 1)
    registry.schema_type[1] = "JSON"
    registry.add(avro.load_schema_text(), 2)  # an Avro schema: not for this format
    return registry


def test_the_encoder_registers_a_json_schema_and_the_decoder_reads_it_back() -> None:
    fake = FakeRegistry()
    encoder = build_encoder("confluent-json", registry=fake.registry(), topic="ids")
    value = encoder.encode(EVENT)
    assert value[0] == 0
    schema_id = int.from_bytes(value[1:5], "big")
    assert fake.schema_type[schema_id] == "JSON"
    assert fake.subjects == {"ids-value": schema_id}
    decoder = ConfluentJsonDecoder(fake.registry())
    assert decoder.decode(value) == JsonDecoder().decode(json.dumps(EVENT).encode())


def test_the_schema_id_is_checked_once(fake: FakeRegistry) -> None:
    decoder = ConfluentJsonDecoder(fake.registry())
    value = b"\x00\x00\x00\x00\x01" + json.dumps(EVENT).encode()
    for _ in range(4):
        assert decoder.decode(value).user_id == "u-1"
    assert len(fake.requests) == 1


def test_bad_records(fake: FakeRegistry) -> None:
    decoder = ConfluentJsonDecoder(fake.registry())
    body = json.dumps(EVENT).encode()
    assert reason(decoder, None) == DecodeReason.TOMBSTONE
    assert reason(decoder, body) == DecodeReason.BAD_MAGIC_BYTE  # plain JSON on this topic
    assert reason(decoder, b"\x00\x00\x01") == DecodeReason.TRUNCATED
    assert reason(decoder, b"\x00\x00\x00\x00\x09" + body) == DecodeReason.UNKNOWN_SCHEMA_ID
    assert reason(decoder, b"\x00\x00\x00\x00\x02" + body) == DecodeReason.INVALID_WRITER_SCHEMA
    assert reason(decoder, b"\x00\x00\x00\x00\x01") == DecodeReason.EMPTY_VALUE
    assert reason(decoder, b"\x00\x00\x00\x00\x01{") == DecodeReason.INVALID_JSON
    assert reason(decoder, b'\x00\x00\x00\x00\x01{"userId": "u"}') == DecodeReason.MISSING_TYPE


def test_registry_trouble_is_transient(fake: FakeRegistry) -> None:
    decoder = ConfluentJsonDecoder(fake.registry())
    fake.fail_with = 503
    with pytest.raises(RegistryUnavailable):
        decoder.decode(b"\x00\x00\x00\x00\x01" + json.dumps(EVENT).encode())


def test_settings_and_build_decoder() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_TOPIC": "t", "INKIT_API_KEY": "k"}
    with pytest.raises(ConfigError, match="confluent-json needs SCHEMA_REGISTRY_URL"):
        Settings.from_env({**env, "KAFKA_VALUE_FORMAT": "confluent-json"})
    settings = Settings.from_env(
        {**env, "KAFKA_VALUE_FORMAT": "confluent-json", "SCHEMA_REGISTRY_URL": REGISTRY_URL}
    )
    decoder = build_decoder(settings, FakeRegistry().client())
    assert isinstance(decoder, ConfluentJsonDecoder)
    decoder.close()
