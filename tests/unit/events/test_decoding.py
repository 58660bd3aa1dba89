"""The three decoders: every bad-record class, the registry boundary, and fuzzing."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import fastavro
import httpx
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from connector.errors import ConfigError, DecodeError, RegistryUnavailable
from connector.events import avro
from connector.events.decoding import (
    AvroDecoder,
    ConfluentAvroDecoder,
    Decoder,
    DecodeReason,
    JsonDecoder,
    build_decoder,
)
from connector.events.encoding import encode_event
from connector.models import SegmentMessage
from connector.settings import Settings
from tests.unit.fake_registry import REGISTRY_URL, FakeRegistry

EVENT: dict[str, Any] = {
    "type": "identify",
    "userId": "u-1",
    "anonymousId": "a-1",
    "messageId": "m-1",
    "timestamp": "2024-05-01T10:00:00.000Z",
    "sentAt": "2024-05-01T10:00:00.100Z",
    "receivedAt": "2024-05-01T10:00:00.200Z",
    "originalTimestamp": "2024-05-01T10:00:00.000Z",
    "channel": "server",
    "version": 2,
    "traits": {
        "template_id": "tmpl_1",
        "order_completed_last_30days": True,
        "logins": 42,
        "score": 1.5,
        "address": {"street": "1 Rocket Road", "city": "Hawthorne"},
        "tags": ["a", 1, None],
    },
    "context": {"library": {"name": "analytics-python", "version": "2.3.0"}},
    "integrations": {"All": True, "Inkit": {"foo": 1}},
}
EXPECTED = SegmentMessage(
    type="identify",
    user_id="u-1",
    anonymous_id="a-1",
    message_id="m-1",
    timestamp="2024-05-01T10:00:00.000Z",
    sent_at="2024-05-01T10:00:00.100Z",
    received_at="2024-05-01T10:00:00.200Z",
    original_timestamp="2024-05-01T10:00:00.000Z",
    traits=EVENT["traits"],
    context=EVENT["context"],
    integrations=EVENT["integrations"],
    version="2",
    channel="server",
)


def reason_of(decoder: Decoder, value: bytes | None) -> str:
    with pytest.raises(DecodeError) as info:
        decoder.decode(value)
    assert "u-1" not in str(info.value)  # no record content in errors
    return info.value.reason


@pytest.fixture
def fake() -> FakeRegistry:
    registry = FakeRegistry()
    registry.add(avro.load_schema_text(), 1)
    return registry


@pytest.fixture
def confluent(fake: FakeRegistry) -> ConfluentAvroDecoder:
    return ConfluentAvroDecoder(fake.registry())


def confluent_bytes(fake: FakeRegistry, event: dict[str, Any] = EVENT) -> bytes:
    return encode_event(event, "confluent-avro", fake.registry(), topic="identifies")


def avro_body(record: dict[str, Any], schema: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()


# -- happy paths -------------------------------------------------------------------------------


def test_each_format_decodes_the_same_message(
    fake: FakeRegistry, confluent: ConfluentAvroDecoder
) -> None:
    assert JsonDecoder().decode(encode_event(EVENT, "json")) == EXPECTED
    assert AvroDecoder().decode(encode_event(EVENT, "avro")) == EXPECTED
    assert confluent.decode(confluent_bytes(fake)) == EXPECTED


def test_types_survive_avro() -> None:
    traits = AvroDecoder().decode(encode_event(EVENT, "avro")).traits
    assert traits["order_completed_last_30days"] is True
    assert type(traits["logins"]) is int
    assert type(traits["score"]) is float
    assert traits["tags"] == ["a", 1, None]


def test_json_accepts_snake_case_ids_as_a_fallback() -> None:
    raw = json.dumps({"type": "identify", "user_id": "u-1", "message_id": "m", "sent_at": "t"})
    message = JsonDecoder().decode(raw.encode())
    assert (message.user_id, message.message_id, message.sent_at) == ("u-1", "m", "t")


def test_build_decoder_by_setting() -> None:
    base = Settings(bootstrap_servers="k:9092", topic="t")
    assert isinstance(
        build_decoder(Settings(**{**_fields(base), "value_format": "json"})), JsonDecoder
    )
    assert isinstance(
        build_decoder(Settings(**{**_fields(base), "value_format": "avro"})), AvroDecoder
    )
    confluent = Settings(
        **{**_fields(base), "value_format": "confluent-avro", "schema_registry_url": REGISTRY_URL}
    )
    decoder = build_decoder(confluent, FakeRegistry().client())
    assert isinstance(decoder, ConfluentAvroDecoder)
    decoder.close()
    with pytest.raises(ConfigError):
        build_decoder(Settings(**{**_fields(base), "schema_registry_url": None}))


def _fields(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


# -- bad records, one test per class ------------------------------------------------------------


@pytest.mark.parametrize("decoder", [JsonDecoder(), AvroDecoder()], ids=["json", "avro"])
def test_tombstone_and_empty(decoder: Decoder) -> None:
    assert reason_of(decoder, None) == DecodeReason.TOMBSTONE
    assert reason_of(decoder, b"") == DecodeReason.EMPTY_VALUE


def test_too_large_is_refused_before_parsing() -> None:
    assert reason_of(JsonDecoder(max_record_bytes=10), b"{" + b" " * 20 + b"}") == "too_large"
    assert reason_of(AvroDecoder(max_record_bytes=10), b"\x00" * 11) == "too_large"


def test_bad_magic_byte(confluent: ConfluentAvroDecoder) -> None:
    assert reason_of(confluent, b"\x01\x00\x00\x00\x01\x02") == DecodeReason.BAD_MAGIC_BYTE
    assert reason_of(confluent, b"{") == DecodeReason.BAD_MAGIC_BYTE  # JSON on an Avro topic


def test_short_header_is_truncated(confluent: ConfluentAvroDecoder) -> None:
    assert reason_of(confluent, b"\x00\x00\x01") == DecodeReason.TRUNCATED


def test_unknown_schema_id(confluent: ConfluentAvroDecoder) -> None:
    assert reason_of(confluent, b"\x00\x00\x00\x00\x63\x02") == DecodeReason.UNKNOWN_SCHEMA_ID


def test_invalid_writer_schemas(fake: FakeRegistry, confluent: ConfluentAvroDecoder) -> None:
    fake.add("{not json", 7)
    fake.add('"string"', 8)  # valid Avro, not a record
    fake.add('{"type": "record", "name": "P", "fields": []}', 9)
    fake.schema_type[9] = "PROTOBUF"
    zero_width = {
        "type": "record",
        "name": "Z",
        "fields": [{"name": "a", "type": {"type": "array", "items": "null"}}],
    }
    fake.add(json.dumps(zero_width), 10)
    for schema_id in (7, 8, 9, 10):
        value = b"\x00" + schema_id.to_bytes(4, "big") + b"\x02"
        assert reason_of(confluent, value) == DecodeReason.INVALID_WRITER_SCHEMA
        # cached: a second record with the same id does not ask again
        before = len(fake.requests)
        assert reason_of(confluent, value) == DecodeReason.INVALID_WRITER_SCHEMA
        assert len(fake.requests) == before


def test_truncated_body(fake: FakeRegistry, confluent: ConfluentAvroDecoder) -> None:
    good = confluent_bytes(fake)
    assert reason_of(confluent, good[:-3]) == DecodeReason.TRUNCATED
    assert reason_of(AvroDecoder(), encode_event(EVENT, "avro")[:-3]) == DecodeReason.TRUNCATED


def test_trailing_bytes() -> None:
    assert reason_of(AvroDecoder(), encode_event(EVENT, "avro") + b"\x00") == "trailing_bytes"


def test_corrupt_union_index_is_invalid_avro() -> None:
    # type "" then messageId with union branch 9 of 2: corrupt
    assert reason_of(AvroDecoder(), b"\x02x\x12") == DecodeReason.INVALID_AVRO


def test_type_mismatch_when_the_writer_does_not_resolve(
    fake: FakeRegistry, confluent: ConfluentAvroDecoder
) -> None:
    writer = {
        "type": "record",
        "name": "Identify",
        "namespace": "inkitconnector.segment",
        "fields": [{"name": "type", "type": "long"}],
    }
    fake.add(json.dumps(writer), 5)
    value = b"\x00\x00\x00\x00\x05" + avro_body({"type": 3}, writer)
    assert reason_of(confluent, value) == DecodeReason.TYPE_MISMATCH


def test_invalid_utf8() -> None:
    assert reason_of(JsonDecoder(), b'{"type": "identify", "userId": "\xff"}') == "invalid_utf8"
    # Avro string "\xff" as the type field
    assert reason_of(AvroDecoder(), b"\x02\xff") == DecodeReason.INVALID_UTF8
    lone = b'{"type": "identify", "userId": "u", "traits": {"a": "\\ud800"}}'
    assert reason_of(JsonDecoder(), lone) == DecodeReason.INVALID_UTF8


def test_escaped_surrogate_pairs_are_fine() -> None:
    pair = b'{"type": "identify", "userId": "u", "traits": {"a": "\\ud83d\\ude00"}}'
    assert JsonDecoder().decode(pair).traits == {"a": "\U0001f600"}


@pytest.mark.parametrize("raw", [b"{", b"identify", b'{"type": NaN}', b"\xef\xbb\xbf{}"])
def test_invalid_json(raw: bytes) -> None:
    assert reason_of(JsonDecoder(), raw) == DecodeReason.INVALID_JSON


@pytest.mark.parametrize("raw", [b"[]", b"1", b'"identify"', b"null", b"true"])
def test_json_that_is_not_an_object(raw: bytes) -> None:
    assert reason_of(JsonDecoder(), raw) == DecodeReason.NOT_AN_OBJECT


def test_a_numeric_user_id_and_an_epoch_timestamp_are_read_as_segment_reads_them() -> None:
    # Segment's libraries accept both; the mapping never uses the envelope's time, but a letter
    # must not be lost over it (issue #22).
    event = {"type": "identify", "userId": 12345, "timestamp": 1714557600000, "sentAt": 1714557600}
    message = JsonDecoder().decode(json.dumps(event).encode())
    assert message.user_id == "12345"
    assert message.timestamp == "2024-05-01T10:00:00.000Z"
    assert message.sent_at == "2024-05-01T10:00:00.000Z"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"userId": "u-1"}, DecodeReason.MISSING_TYPE),
        ({"type": 1, "userId": "u-1"}, DecodeReason.MISSING_TYPE),
        ({"type": " ", "userId": "u-1"}, DecodeReason.MISSING_TYPE),
        ({"type": "identify"}, DecodeReason.MISSING_IDENTITY),
        ({"type": "identify", "userId": "", "anonymousId": None}, DecodeReason.MISSING_IDENTITY),
        ({"type": "identify", "userId": True}, DecodeReason.INVALID_FIELD),
        ({"type": "identify", "userId": 1.5}, DecodeReason.INVALID_FIELD),
        ({"type": "identify", "userId": {"id": 1}}, DecodeReason.INVALID_FIELD),
        ({"type": "identify", "userId": "u-1", "traits": []}, DecodeReason.INVALID_FIELD),
        ({"type": "identify", "userId": "u-1", "traits": "x"}, DecodeReason.INVALID_FIELD),
        ({"type": "identify", "userId": "u-1", "context": 1}, DecodeReason.INVALID_FIELD),
        ({"type": "identify", "userId": "u-1", "sentAt": [1]}, DecodeReason.INVALID_FIELD),
        ({"type": "identify", "userId": "u-1", "sentAt": 1e300}, DecodeReason.INVALID_FIELD),
        ({"type": "identify", "userId": "u-1", "version": [1]}, DecodeReason.INVALID_FIELD),
    ],
)
def test_json_that_is_not_a_segment_message(event: dict[str, Any], reason: str) -> None:
    assert reason_of(JsonDecoder(), json.dumps(event).encode()) == reason


def test_avro_without_identity_or_type() -> None:
    assert reason_of(AvroDecoder(), encode_event({"type": "identify"}, "avro")) == (
        DecodeReason.MISSING_IDENTITY
    )
    assert reason_of(AvroDecoder(), encode_event({"type": "", "userId": "u"}, "avro")) == (
        DecodeReason.MISSING_TYPE
    )


def test_non_finite_numbers() -> None:
    raw = b'{"type": "identify", "userId": "u", "traits": {"n": 1e400}}'
    assert reason_of(JsonDecoder(), raw) == DecodeReason.INVALID_NUMBER
    raw = b'{"type": "identify", "userId": "u", "version": 1e400}'
    assert reason_of(JsonDecoder(), raw) == DecodeReason.INVALID_NUMBER
    record = avro_record_with_trait({"value": float("nan")})
    body = avro_body(record, json.loads(avro.load_schema_text()))
    assert reason_of(AvroDecoder(), body) == DecodeReason.INVALID_NUMBER


def avro_record_with_trait(wrapped: dict[str, Any]) -> dict[str, Any]:
    return {"type": "identify", "userId": "u", "traits": {"n": wrapped}}


def test_json_nesting_is_bounded_like_the_schema() -> None:
    ok: Any = 1
    for _ in range(avro.MAX_NESTING):
        ok = [ok]
    event = {"type": "identify", "userId": "u", "traits": {"x": ok}}
    assert JsonDecoder().decode(json.dumps(event).encode()).traits == {"x": ok}
    event["traits"] = {"x": [ok]}
    assert reason_of(JsonDecoder(), json.dumps(event).encode()) == DecodeReason.TOO_DEEP
    assert reason_of(JsonDecoder(), b"[" * 100_000) == DecodeReason.TOO_DEEP


def test_deep_avro_through_a_recursive_writer_is_too_deep_not_a_crash(
    fake: FakeRegistry, confluent: ConfluentAvroDecoder
) -> None:
    # fastavro's compiled reader would overflow the C stack here (SIGSEGV); a recursive writer
    # schema is therefore read with the pure-Python reader, which raises RecursionError.
    writer = json.loads(avro.load_schema_text())
    node = {
        "type": "record",
        "name": "Node",
        "fields": [{"name": "next", "type": ["null", "Node"]}],
    }
    writer["fields"].append({"name": "extra", "type": ["null", node], "default": None})
    fake.add(json.dumps(writer), 3)
    assert avro.parse_writer_schema(3, json.dumps(writer)).needs_safe_reader
    head = avro_body({"type": "identify", "userId": "u", "extra": None}, writer)[:-1]
    depth = 20_000
    value = b"\x00\x00\x00\x00\x03" + head + b"\x02" * depth + b"\x00"
    assert reason_of(confluent, value) == DecodeReason.TOO_DEEP
    shallow = b"\x00\x00\x00\x00\x03" + head + b"\x02\x02\x00"
    assert confluent.decode(shallow).user_id == "u"


# -- registry boundary -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        500,
        503,
        401,
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
    ],
)
def test_registry_trouble_is_transient(
    fake: FakeRegistry, confluent: ConfluentAvroDecoder, failure: int | Exception
) -> None:
    value = confluent_bytes(fake)
    fake.fail_with = failure
    with pytest.raises(RegistryUnavailable):
        confluent.decode(value)
    fake.fail_with = None  # once the registry is back, the same record decodes
    assert confluent.decode(value) == EXPECTED


def test_registry_answering_garbage_is_transient(confluent: ConfluentAvroDecoder) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>")

    decoder = ConfluentAvroDecoder(
        avro.SchemaRegistry(
            REGISTRY_URL, None, httpx.Client(transport=httpx.MockTransport(handler))
        )
    )
    with pytest.raises(RegistryUnavailable):
        decoder.decode(b"\x00\x00\x00\x00\x01\x02")


def test_writer_schema_is_fetched_once_with_basic_auth(fake: FakeRegistry) -> None:
    value = confluent_bytes(fake)
    fake.requests.clear()
    decoder = ConfluentAvroDecoder(fake.registry("alice:s3:cret"))
    for _ in range(5):
        decoder.decode(value)
    assert len(fake.requests) == 1
    request = fake.requests[0]
    assert request.url == f"{REGISTRY_URL}/schemas/ids/1"
    assert (
        request.headers["Authorization"] == "Basic " + base64.b64encode(b"alice:s3:cret").decode()
    )


# -- fuzzing ------------------------------------------------------------------------------------

FUZZ = hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decodes_or_fails_cleanly(decoder: Decoder, value: bytes) -> None:
    result: SegmentMessage | DecodeError
    try:
        result = decoder.decode(value)
    except DecodeError as exc:
        result = exc
    if isinstance(result, DecodeError):
        assert result.reason in set(DecodeReason)
    else:
        assert isinstance(result, SegmentMessage)


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_json(value: bytes) -> None:
    decodes_or_fails_cleanly(JsonDecoder(), value)


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_avro(value: bytes) -> None:
    decodes_or_fails_cleanly(AvroDecoder(), value)


@FUZZ
@given(st.data())
def test_mutated_records_avro(data: st.DataObject) -> None:
    good = bytearray(encode_event(EVENT, "avro"))
    for _ in range(data.draw(st.integers(1, 4))):
        good[data.draw(st.integers(0, len(good) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(good)))
    decodes_or_fails_cleanly(AvroDecoder(), bytes(good[:cut]))


@FUZZ
@given(st.binary(max_size=300), st.sampled_from([b"", b"\x00\x00\x00\x00\x01", b"\x00"]))
def test_any_bytes_confluent(value: bytes, prefix: bytes) -> None:
    fake = FakeRegistry()
    fake.add(avro.load_schema_text(), 1)
    decodes_or_fails_cleanly(ConfluentAvroDecoder(fake.registry()), prefix + value)


def test_a_bad_magic_byte_says_when_the_value_looks_like_json(
    confluent: ConfluentAvroDecoder,
) -> None:
    with pytest.raises(
        DecodeError, match="magic byte is 123, expected 0; the value looks like JSON"
    ):
        confluent.decode(b'{"type": "identify"}')
    with pytest.raises(DecodeError) as info:
        confluent.decode(b"\x01\x00\x00\x00\x01\x02")
    assert info.value.detail == "magic byte is 1, expected 0"
