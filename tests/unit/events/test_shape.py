"""Producer-written Avro read by shape: every corpus schema gives what the JSON path gives."""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from connector.errors import ConfigError, DecodeError, RecordError
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
from connector.events.mapping import Mapper
from connector.models import SegmentMessage
from connector.settings import Settings
from tests.fixtures.corpus import CORPUS, CORPUS_DIR, Case, to_datum
from tests.unit.fake_registry import FakeRegistry

SETTINGS = Settings(
    bootstrap_servers="k:9092", topic="t", inkit_api_key="k", inkit_template_id="tmpl_corpus"
)
CASES = [(case, n) for case in CORPUS for n in range(len(case.events))]


def body(schema: dict[str, Any], datum: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, datum)
    return buf.getvalue()


def as_json(message: SegmentMessage) -> str:
    """Strict comparison: 1 and 1.0, True and 1 differ in JSON text."""
    return json.dumps(dataclasses.asdict(message), sort_keys=True)


def outcome(decoder: Decoder, value: bytes) -> str:
    """What the connector would do with ``value``: the request body, the skip, or the error."""
    try:
        result = Mapper(SETTINGS).map(decoder.decode(value))
    except RecordError as exc:
        return f"error {type(exc).__name__} {exc.reason}"
    return json.dumps(dataclasses.asdict(result), sort_keys=True)


def registry_with(case: Case, fake: FakeRegistry) -> int:
    """Register ``case`` (and what it references) in ``fake`` as a producer would."""
    refs = []
    for subject, ref_file in case.references:
        ref_id = fake.add((CORPUS_DIR / ref_file).read_text())
        fake.versions[(subject, 1)] = ref_id
        refs.append({"name": subject, "subject": subject, "version": 1})
    schema_id = fake.add(case.schema_text())
    if refs:
        fake.references[schema_id] = refs
    return schema_id


def test_the_corpus_has_ten_producer_schemas_in_different_styles() -> None:
    files = {case.schema_file for case in CORPUS} - {"bundled"}
    assert len(files) >= 10
    assert all((CORPUS_DIR / name).is_file() for name in files)
    assert len({file.name for file in CORPUS_DIR.glob("*.avsc")}) == len(files) + 1  # + Address


@pytest.mark.parametrize(("case", "n"), CASES, ids=[f"{c.name}-{n}" for c, n in CASES])
def test_corpus_event_reads_as_its_json(case: Case, n: int) -> None:
    event = case.events[n]
    parsed = case.parsed()
    value = body(parsed, to_datum(event, parsed))
    named: dict[str, Any] = parsed["__named_schemas"]
    writer = avro.parse_writer_schema(1, case.schema_text(), named)
    from_avro = AvroDecoder(writer=writer).decode(value)
    from_json = JsonDecoder().decode(json.dumps(event).encode())
    assert as_json(from_avro) == as_json(from_json)
    assert outcome(AvroDecoder(writer=writer), value) == outcome(
        JsonDecoder(), json.dumps(event).encode()
    )
    assert outcome(JsonDecoder(), json.dumps(event).encode()).startswith('{"body"')


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_corpus_through_the_registry_fetches_each_schema_once(case: Case) -> None:
    fake = FakeRegistry()
    schema_id = registry_with(case, fake)
    decoder = ConfluentAvroDecoder(fake.registry())
    parsed = case.parsed()
    for _ in range(3):
        for event in case.events:
            value = avro.HEADER.pack(0, schema_id) + body(parsed, to_datum(event, parsed))
            assert as_json(decoder.decode(value)) == as_json(
                JsonDecoder().decode(json.dumps(event).encode())
            )
    # one GET /schemas/ids/{id}, plus one per referenced subject version
    assert len(fake.requests) == 1 + len(case.references)


def test_logical_types_become_segment_json() -> None:
    case = next(c for c in CORPUS if c.name == "11_logical_types")
    parsed = case.parsed()
    writer = avro.parse_writer_schema(1, case.schema_text())
    message = AvroDecoder(writer=writer).decode(body(parsed, to_datum(case.events[0], parsed)))
    assert message.message_id == "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert message.original_timestamp == "2026-11-28T12:00:00.123456Z"
    assert message.traits == {
        "birthday": "1990-05-01",
        "balance": 12.34,
        "points": 1500,
        "wake_up": "07:30:00.000",
        "account_uuid": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "avatar_hash": "3q2+7w==",
        "note": "aGVsbG8=",
    }
    assert type(message.traits["points"]) is int  # decimal with scale 0


def test_timestamp_millis_keeps_three_digits_and_z() -> None:
    case = next(c for c in CORPUS if c.name == "03_timestamp_millis")
    parsed = case.parsed()
    writer = avro.parse_writer_schema(1, case.schema_text())
    message = AvroDecoder(writer=writer).decode(body(parsed, to_datum(case.events[0], parsed)))
    assert (message.timestamp, message.sent_at) == (
        "2026-11-28T12:00:00.123Z",
        "2026-11-28T12:00:01.000Z",
    )
    assert message.traits["signed_up_at"] == "2026-01-02T03:04:05.123456Z"


# -- what cannot be read as an Identify ---------------------------------------------------------


def schema(*fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": "Event", "namespace": "x", "fields": list(fields)}


USER = {"name": "userId", "type": "string"}


@pytest.mark.parametrize(
    ("writer", "datum", "reason"),
    [
        (schema(USER), {"userId": "u"}, DecodeReason.MISSING_TYPE),
        (
            schema({"name": "type", "type": "long"}, USER),
            {"type": 3, "userId": "u"},
            "type_mismatch",
        ),
        (
            schema({"name": "type", "type": "string"}, USER, {"name": "traits", "type": "long"}),
            {"type": "identify", "userId": "u", "traits": 7},
            DecodeReason.TYPE_MISMATCH,
        ),
        (
            schema(
                {"name": "type", "type": "string"},
                USER,
                {"name": "traits", "type": {"type": "array", "items": "string"}},
            ),
            {"type": "identify", "userId": "u", "traits": ["a"]},
            DecodeReason.TYPE_MISMATCH,
        ),
        (
            schema({"name": "type", "type": "string"}, USER, {"name": "traits", "type": "string"}),
            {"type": "identify", "userId": "u", "traits": "{not json"},
            DecodeReason.INVALID_JSON,
        ),
        (
            schema({"name": "type", "type": "string"}, USER, {"name": "traits", "type": "string"}),
            {"type": "identify", "userId": "u", "traits": "[1, 2]"},
            DecodeReason.INVALID_FIELD,
        ),
        (
            schema({"name": "type", "type": "string"}, {"name": "user_id", "type": "long"}),
            {"type": "identify", "user_id": 12},
            DecodeReason.TYPE_MISMATCH,
        ),
        (
            schema({"name": "type", "type": "string"}, {"name": "anonymousId", "type": "string"}),
            {"type": "identify", "anonymousId": ""},
            DecodeReason.MISSING_IDENTITY,
        ),
        (
            schema(
                {"name": "type", "type": "string"},
                USER,
                {"name": "traits", "type": {"type": "map", "values": "double"}},
            ),
            {"type": "identify", "userId": "u", "traits": {"n": float("nan")}},
            DecodeReason.INVALID_NUMBER,
        ),
    ],
)
def test_what_cannot_be_an_identify_has_a_precise_reason(
    writer: dict[str, Any], datum: dict[str, Any], reason: str
) -> None:
    fake = FakeRegistry()
    fake.add(json.dumps(writer), 3)
    value = b"\x00\x00\x00\x00\x03" + body(fastavro.parse_schema(writer), datum)
    with pytest.raises(DecodeError) as info:
        ConfluentAvroDecoder(fake.registry()).decode(value)
    assert info.value.reason == reason
    assert "12" not in str(info.value)  # no record content in the detail
    assert "not json" not in str(info.value)


def test_a_missing_reference_is_an_unknown_schema_not_cached() -> None:
    case = next(c for c in CORPUS if c.references)
    fake = FakeRegistry()
    schema_id = fake.add(case.schema_text())
    fake.references[schema_id] = [{"name": "A", "subject": "address-value", "version": 1}]
    decoder = ConfluentAvroDecoder(fake.registry())
    value = avro.HEADER.pack(0, schema_id) + b"\x02"
    with pytest.raises(DecodeError) as info:
        decoder.decode(value)
    assert info.value.reason == DecodeReason.UNKNOWN_SCHEMA_ID
    # registered late (a lagging replica): the next record finds it
    fake.versions[("address-value", 1)] = fake.add((CORPUS_DIR / "08_address.avsc").read_text())
    parsed = case.parsed()
    good = avro.HEADER.pack(0, schema_id) + body(parsed, to_datum(case.events[0], parsed))
    assert decoder.decode(good).user_id == "u-08"


def test_a_reference_that_does_not_parse_is_an_invalid_writer_schema() -> None:
    fake = FakeRegistry()
    fake.versions[("bad-value", 1)] = fake.add(
        '{"type": "record", "name": "B", "fields": [{"name": "x", "type": "Nope"}]}'
    )
    schema_id = fake.add(json.dumps(schema({"name": "type", "type": "string"})))
    fake.references[schema_id] = [{"name": "B", "subject": "bad-value", "version": 1}]
    with pytest.raises(DecodeError) as info:
        ConfluentAvroDecoder(fake.registry()).decode(avro.HEADER.pack(0, schema_id) + b"\x00")
    assert info.value.reason == DecodeReason.INVALID_WRITER_SCHEMA


def test_our_schema_still_takes_the_fast_path() -> None:
    fake = FakeRegistry()
    value = encode_event(CORPUS[0].events[0], "confluent-avro", fake.registry(), topic="t")
    writer = fake.registry().writer_schema(1)
    assert writer.same_as_reader
    assert ConfluentAvroDecoder(fake.registry()).decode(value).traits["logins"] == 3


# -- AVRO_SCHEMA_FILE: bare avro with the producer's schema --------------------------------------


def test_bare_avro_reads_the_producers_schema_from_a_file() -> None:
    case = next(c for c in CORPUS if c.name == "04_nested_address")
    settings = dataclasses.replace(
        SETTINGS, value_format="avro", avro_schema_file=str(CORPUS_DIR / case.schema_file)
    )
    parsed = case.parsed()
    message = build_decoder(settings).decode(body(parsed, to_datum(case.events[0], parsed)))
    assert message.traits["address"]["postalCode"] == "90250"
    # without the file, the bundled schema is read: these bytes are not ours
    with pytest.raises(DecodeError):
        build_decoder(dataclasses.replace(settings, avro_schema_file=None)).decode(
            body(parsed, to_datum(case.events[0], parsed))
        )


@pytest.mark.parametrize("content", ['{"type": "record"', '"string"', None])
def test_a_bad_avro_schema_file_is_a_config_error(tmp_path: Any, content: str | None) -> None:
    path = tmp_path / "writer.avsc"
    if content is not None:
        path.write_text(content)
    settings = dataclasses.replace(SETTINGS, value_format="avro", avro_schema_file=str(path))
    with pytest.raises(ConfigError):
        build_decoder(settings)


def test_a_missing_avro_schema_file_fails_at_start_up() -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
        "KAFKA_TOPIC": "t",
        "INKIT_API_KEY": "k",
        "KAFKA_VALUE_FORMAT": "avro",
        "AVRO_SCHEMA_FILE": str(CORPUS_DIR / "no-such.avsc"),
    }
    with pytest.raises(ConfigError, match=r"AVRO_SCHEMA_FILE .* is not a file"):
        Settings.from_env(env)
    env["AVRO_SCHEMA_FILE"] = str(CORPUS_DIR / "01_traits_map_string.avsc")
    assert Settings.from_env(env).avro_schema_file == env["AVRO_SCHEMA_FILE"]


# -- fuzzing the by-shape path ------------------------------------------------------------------


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([c for c in CORPUS if c.name[:2] in ("03", "08", "09", "11")]), st.data())
def test_mutated_producer_records_decode_or_fail_cleanly(case: Case, data: st.DataObject) -> None:
    parsed = case.parsed()
    writer = avro.parse_writer_schema(1, case.schema_text(), parsed["__named_schemas"])
    good = bytearray(body(parsed, to_datum(case.events[0], parsed)))
    for _ in range(data.draw(st.integers(1, 4))):
        good[data.draw(st.integers(0, len(good) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(good)))
    result: SegmentMessage | DecodeError
    try:
        result = AvroDecoder(writer=writer).decode(bytes(good[:cut]))
    except DecodeError as exc:
        result = exc
    if isinstance(result, DecodeError):
        assert result.reason in set(DecodeReason)
    else:
        assert isinstance(result, SegmentMessage)
