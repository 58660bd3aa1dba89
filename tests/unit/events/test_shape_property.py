"""Property: any Segment-shaped writer schema hypothesis builds, and any event it can hold,
become the same Inkit request (or the same skip or error) as the event sent as JSON.

The Avro side and the JSON side go through the same ``Mapper``, so this holds whatever the
mapping rules are: it pins the decoding, not the mapping.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
from hypothesis import (
    HealthCheck,
    event as hypothesis_event,
    given,
    settings as hsettings,
    strategies as st,
)

from connector.errors import RecordError
from connector.events import avro
from connector.events.decoding import AvroDecoder, Decoder, JsonDecoder
from connector.events.mapping import Mapper
from connector.models import InkitMode
from connector.settings import Settings
from tests.fixtures.corpus import to_datum

WEBHOOK = Settings(
    bootstrap_servers="k:9092", topic="t", inkit_api_key="k", inkit_template_id="tmpl_p"
)
RENDER = dataclasses.replace(WEBHOOK, inkit_mode=InkitMode.RENDER)
_names = itertools.count()

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=10)
name = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
reserved = st.sampled_from(["email", "firstName", "first_name", "name", "phone", "company"])
trait_name = st.one_of(name, reserved)
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_value = st.recursive(
    scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(name, inner, max_size=3)),
    max_leaves=6,
)
# Values a typed record can declare: no nulls (a null record field is left out, as a JSON
# producer would not send it), lists of one type, nested objects as nested records.
typed_value = st.recursive(
    st.one_of(
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        text,
    ),
    lambda inner: st.one_of(
        st.lists(text, max_size=3), st.dictionaries(name, inner, min_size=1, max_size=3)
    ),
    max_leaves=5,
)
SCALAR_UNION = ["null", "boolean", "long", "double", "string"]


def json_value_schema() -> dict[str, Any]:
    """The obvious recursive JsonValue a producer might copy from our docs."""
    node = f"JsonValue{next(_names)}"
    return {
        "type": "record",
        "name": node,
        "fields": [
            {
                "name": "value",
                "type": [
                    *SCALAR_UNION,
                    {"type": "array", "items": node},
                    {"type": "map", "values": node},
                ],
            }
        ],
    }


def typed_schema(value: Any) -> Any:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return {"type": "array", "items": "string"}
    fields = [{"name": k, "type": typed_schema(v)} for k, v in value.items()]
    return {"type": "record", "name": f"R{next(_names)}", "fields": fields}


@st.composite
def object_field(draw: st.DrawFn, field: str) -> tuple[dict[str, Any] | None, Any]:
    """(schema field or None for absent, the JSON value of that field)."""
    style = draw(
        st.sampled_from(["absent", "map_string", "map_union", "json_value", "record", "json_text"])
    )
    if style == "absent":
        return None, None
    if style == "map_string":
        value = draw(st.dictionaries(trait_name, text, max_size=4))
        return {"name": field, "type": {"type": "map", "values": "string"}}, value
    if style == "map_union":
        value = draw(st.dictionaries(trait_name, scalar, max_size=4))
        union = ["null", {"type": "map", "values": SCALAR_UNION}]
        return {"name": field, "type": union, "default": None}, value
    if style == "json_value":
        value = draw(st.dictionaries(trait_name, json_value, max_size=4))
        return {"name": field, "type": {"type": "map", "values": json_value_schema()}}, value
    if style == "record":
        value = draw(st.dictionaries(name, typed_value, min_size=1, max_size=4))
        return {"name": field, "type": typed_schema(value)}, value
    value = draw(st.dictionaries(trait_name, json_value, max_size=4))
    return {"name": field, "type": "string"}, value


@st.composite
def producer(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Segment-shaped writer schema and one Segment JSON event it can hold."""
    snake = draw(st.booleans())
    event: dict[str, Any] = {"type": draw(st.sampled_from(["identify", "identify", "track"]))}
    type_schema = draw(
        st.sampled_from(
            [
                "string",
                ["null", "string"],
                {"type": "enum", "name": "Kind", "symbols": ["identify", "track"]},
            ]
        )
    )
    fields: list[dict[str, Any]] = [{"name": "type", "type": type_schema}]
    identity = draw(st.sampled_from(["userId", "anonymousId", "neither"]))
    for camel, snake_name in (
        ("userId", "user_id"),
        ("anonymousId", "anonymous_id"),
        ("messageId", "message_id"),
        ("sentAt", "sent_at"),
    ):
        present = draw(st.sampled_from(["absent", "null", "value"]))
        if camel == identity:  # most examples should get as far as the mapper
            present = "value"
        if present == "absent":
            continue
        fields.append(
            {"name": snake_name if snake else camel, "type": ["null", "string"], "default": None}
        )
        if present == "value":
            event[camel] = draw(text.filter(str.strip) if camel == identity else text)
    if draw(st.booleans()):
        millis = draw(st.integers(0, 4_000_000_000_000))
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis)
        event["timestamp"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        fields.append(
            {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}}
        )
    for field in ("traits", "context", "integrations"):
        schema_field, value = draw(object_field(field))
        if schema_field is not None:
            fields.append(schema_field)
            event[field] = value
    return {"type": "record", "name": "Identify", "namespace": "p", "fields": fields}, event


def outcome(decoder: Decoder, value: bytes, settings: Settings) -> tuple[str, str]:
    """(the decoded message, what the mapper made of it) as strict JSON text, or the error."""
    try:
        message = decoder.decode(value)
        decoded = json.dumps(dataclasses.asdict(message), sort_keys=True)
        result = Mapper(settings).map(message)
    except RecordError as exc:
        return "error", f"{type(exc).__name__} {exc.reason}"
    return decoded, json.dumps(dataclasses.asdict(result), sort_keys=True)


def event_kind(result: str) -> None:
    """Label the example, so ``--hypothesis-show-statistics`` shows the mix that was tried."""
    kind = result.split(" ")[0] if not result.startswith("{") else "request"
    if '"reason"' in result:
        kind = "skip"
    hypothesis_event(kind)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(producer())
def test_any_segment_shaped_schema_maps_like_its_json(made: tuple[dict[str, Any], Any]) -> None:
    schema, event = made
    text_schema = json.dumps(schema)
    writer = avro.parse_writer_schema(1, text_schema)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, writer.parsed, to_datum(event, writer.parsed))
    as_json = json.dumps(event).encode()
    event_kind(outcome(JsonDecoder(), as_json, WEBHOOK)[1])
    for settings in (WEBHOOK, RENDER):
        assert outcome(AvroDecoder(writer=writer), buf.getvalue(), settings) == outcome(
            JsonDecoder(), as_json, settings
        )
