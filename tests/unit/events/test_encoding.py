"""Encoders: generated events round-trip encode -> decode in all three formats."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from connector.events import avro
from connector.events.decoding import AvroDecoder, ConfluentAvroDecoder, JsonDecoder
from connector.events.encoding import EncodeError, build_encoder, encode_event
from connector.models import SegmentMessage
from tests.unit.fake_registry import REGISTRY_URL, FakeRegistry

LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
SCALARS = (
    st.none()
    | st.booleans()
    | LONG
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=max_leaves,
    )


OBJECTS = st.dictionaries(st.text(max_size=12), json_values(), max_size=5)
OPTIONAL_TEXT = st.none() | st.text(max_size=16)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": draw(
            st.sampled_from(["identify", "track", "Identify"])
            | st.text(min_size=1, max_size=8).filter(str.strip)
        ),
    }
    user_id = draw(st.text(min_size=1, max_size=16))
    event[draw(st.sampled_from(["userId", "anonymousId"]))] = user_id
    for name in ("messageId", "timestamp", "sentAt", "receivedAt", "originalTimestamp", "channel"):
        value = draw(OPTIONAL_TEXT)
        if value is not None:
            event[name] = value
    event["version"] = draw(st.none() | st.text(max_size=4) | st.integers(0, 3))
    event["traits"] = draw(OBJECTS)
    event["context"] = draw(OBJECTS)
    event["integrations"] = draw(
        st.dictionaries(st.sampled_from(["All", "Inkit", "Mixpanel"]), json_values(2))
    )
    return event


def expected(event: dict[str, Any]) -> SegmentMessage:
    version = event.get("version")
    return SegmentMessage(
        type=event["type"],
        user_id=event.get("userId"),
        anonymous_id=event.get("anonymousId"),
        message_id=event.get("messageId"),
        timestamp=event.get("timestamp"),
        sent_at=event.get("sentAt"),
        received_at=event.get("receivedAt"),
        original_timestamp=event.get("originalTimestamp"),
        traits=event["traits"],
        context=event["context"],
        integrations=event["integrations"],
        version=None if version is None else str(version),
        channel=event.get("channel"),
    )


def same_types(a: Any, b: Any) -> bool:
    """Equal, with every value the same Python type (1 == 1.0 == True is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_types(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_types(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@hsettings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events())
def test_round_trip_in_every_format(event: dict[str, Any]) -> None:
    fake = FakeRegistry()
    want = expected(event)
    got = {
        "json": JsonDecoder().decode(encode_event(event, "json")),
        "avro": AvroDecoder().decode(encode_event(event, "avro")),
        "confluent-avro": ConfluentAvroDecoder(fake.registry()).decode(
            encode_event(event, "confluent-avro", fake.registry(), topic="t")
        ),
    }
    for message in got.values():
        assert message == want
        assert same_types(message.traits, want.traits)
        assert same_types(message.context, want.context)
        assert same_types(message.integrations, want.integrations)


def test_confluent_encoder_registers_once_under_topic_value() -> None:
    fake = FakeRegistry()
    encoder = build_encoder("confluent-avro", registry=fake.registry(), topic="segment.identify")
    first = encoder.encode({"type": "identify", "userId": "u"})
    encoder.encode({"type": "identify", "userId": "v"})
    registrations = [r for r in fake.requests if r.method == "POST"]
    assert len(registrations) == 1
    assert registrations[0].url == f"{REGISTRY_URL}/subjects/segment.identify-value/versions"
    assert json.loads(registrations[0].content) == {"schema": avro.load_schema_text()}
    assert registrations[0].headers["Content-Type"] == "application/vnd.schemaregistry.v1+json"
    schema_id = fake.subjects["segment.identify-value"]
    assert first[:5] == b"\x00" + schema_id.to_bytes(4, "big")


def test_registry_refusing_the_schema() -> None:
    fake = FakeRegistry()
    fake.fail_with = 409
    with pytest.raises(avro.InvalidSchema):
        encode_event({"type": "identify", "userId": "u"}, "confluent-avro", fake.registry(), "t")


@pytest.mark.parametrize("fmt", ["avro", "json"])
@pytest.mark.parametrize(
    "traits",
    [{"n": float("nan")}, {"n": float("inf")}, {"s": {1, 2}}, {"s": "\ud800"}],
    ids=["nan", "inf", "set", "surrogate"],
)
def test_values_json_cannot_hold_are_refused(fmt: str, traits: dict[str, Any]) -> None:
    with pytest.raises(EncodeError):
        encode_event({"type": "identify", "userId": "u", "traits": traits}, fmt)


def test_avro_refuses_what_the_schema_cannot_hold() -> None:
    deep: Any = 1
    for _ in range(avro.MAX_NESTING + 1):
        deep = [deep]
    for traits in ({"big": 2**63}, {"deep": deep}, {"k": {1: "int key"}}):
        with pytest.raises(EncodeError):
            encode_event({"type": "identify", "userId": "u", "traits": traits}, "avro")
    for event in (
        {"userId": "u"},
        {"type": "identify", "userId": 1},
        {"type": "identify", "traits": []},
    ):
        with pytest.raises(EncodeError):
            encode_event(event, "avro")


def test_unknown_format_and_missing_registry() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        build_encoder("xml")
    with pytest.raises(ValueError, match="registry"):
        build_encoder("confluent-avro", topic="t")
