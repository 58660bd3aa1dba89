"""Schema evolution: newer and older writer schemas decode with the bundled reader schema."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from connector.errors import DecodeError
from connector.events import avro
from connector.events.decoding import ConfluentAvroDecoder, DecodeReason
from connector.events.encoding import to_avro_record
from tests.unit.fake_registry import FakeRegistry

FIXTURES = Path(__file__).parents[2] / "fixtures" / "schemas"
SEGMENT_FIELDS = {
    "type",
    "messageId",
    "userId",
    "anonymousId",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
    "channel",
    "version",
    "traits",
    "context",
    "integrations",
}


def framed(schema_id: int, schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return b"\x00" + schema_id.to_bytes(4, "big") + buf.getvalue()


def decoder_with(schema_id: int, schema: dict[str, Any]) -> ConfluentAvroDecoder:
    fake = FakeRegistry()
    fake.add(json.dumps(schema), schema_id)
    return ConfluentAvroDecoder(fake.registry())


def test_bundled_schema_has_every_segment_field_and_defaults() -> None:
    schema = json.loads(avro.load_schema_text())
    fields = {field["name"]: field for field in schema["fields"]}
    assert set(fields) == SEGMENT_FIELDS
    assert all("default" in field for field in fields.values())  # so fields can be dropped later
    assert fields["traits"]["type"]["values"]["name"] == "JsonValue0"


def test_writer_with_an_extra_optional_field() -> None:
    writer = json.loads(avro.load_schema_text())
    writer["fields"].append({"name": "writeKey", "type": ["null", "string"], "default": None})
    record = to_avro_record(
        {"type": "identify", "userId": "u", "traits": {"plan": "pro", "n": [1, {"a": True}]}}
    )
    record["writeKey"] = "wk_123"
    message = decoder_with(2, writer).decode(framed(2, writer, record))
    assert message.user_id == "u"
    assert message.traits == {"plan": "pro", "n": [1, {"a": True}]}


def test_older_writer_without_some_of_our_optional_fields() -> None:
    writer = json.loads((FIXTURES / "identify_v0_older.avsc").read_text())
    record = {
        "type": "identify",
        "messageId": "m",
        "userId": "u",
        "anonymousId": None,
        "timestamp": None,
        "sentAt": None,
        "receivedAt": "2024-01-01T00:00:00Z",
        "traits": {"first_name": {"value": "Nick"}, "vip": {"value": True}},
    }
    message = decoder_with(4, writer).decode(framed(4, writer, record))
    assert message.traits == {"first_name": "Nick", "vip": True}
    assert message.received_at == "2024-01-01T00:00:00Z"
    assert (message.channel, message.version, message.original_timestamp) == (None, None, None)
    assert message.context == {}
    assert message.integrations == {}


def test_recursive_json_value_writer_is_read_by_shape() -> None:
    writer = json.loads((FIXTURES / "identify_recursive.avsc").read_text())
    assert avro.parse_writer_schema(6, json.dumps(writer)).needs_safe_reader
    shallow = {"a": {"value": [{"value": 1}, {"value": {"b": {"value": "x"}}}]}}
    decoder = decoder_with(6, writer)
    message = decoder.decode(
        framed(6, writer, {"type": "identify", "userId": "u", "traits": shallow})
    )
    assert message.traits == {"a": [1, {"b": "x"}]}
    # deeper than the reader allows: a clean type mismatch, never a crash
    deep: dict[str, Any] = {"value": 1}
    for _ in range(avro.MAX_NESTING + 1):
        deep = {"value": [deep]}
    value = framed(6, writer, {"type": "identify", "userId": "u", "traits": {"d": deep}})
    with pytest.raises(DecodeError) as info:
        decoder.decode(value)
    assert info.value.reason == DecodeReason.TOO_DEEP


def test_same_schema_takes_the_fast_path() -> None:
    parsed = avro.parse_writer_schema(1, avro.load_schema_text())
    assert parsed.same_as_reader
    assert not parsed.needs_safe_reader
