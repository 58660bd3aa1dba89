"""Segment events to record values in the four formats: for `produce`, tests and benchmarks."""

from __future__ import annotations

import io
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import fastavro

from connector.events import avro
from connector.events.segment import segment_version

FORMATS = ("confluent-avro", "avro", "json", "confluent-json")
# The JSON Schema the confluent-json encoder registers: Segment's Identify, open to extra keys.
IDENTIFY_JSON_SCHEMA = json.dumps(
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "SegmentIdentify",
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": "string"},
            "userId": {"type": ["string", "null"]},
            "anonymousId": {"type": ["string", "null"]},
            "messageId": {"type": ["string", "null"]},
            "traits": {"type": "object"},
            "context": {"type": "object"},
            "integrations": {"type": "object"},
        },
    },
    sort_keys=True,
)
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_MESSAGE_FIELDS = (
    "messageId",
    "userId",
    "anonymousId",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
    "channel",
)


class EncodeError(ValueError):
    """The event cannot be written in the requested format (a caller's mistake, not a record's)."""


class Encoder(ABC):
    """Turns a Segment event (a dict in Segment's JSON shape, camelCase keys) into record bytes.

    Built once per format. ``encode`` raises ``EncodeError`` for an event the format cannot hold
    (NaN, an integer outside 64 bits for Avro, nesting deeper than ``avro.MAX_NESTING``...); the
    confluent-avro encoder may also raise ``RegistryUnavailable`` on its first call.
    """

    @abstractmethod
    def encode(self, event: Mapping[str, Any]) -> bytes: ...

    def close(self) -> None:  # noqa: B027 - optional hook; most encoders own nothing
        """Release what the encoder owns."""


class JsonEncoder(Encoder):
    """Compact UTF-8 JSON, exactly the keys given."""

    def encode(self, event: Mapping[str, Any]) -> bytes:
        try:
            text = json.dumps(event, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            return text.encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise EncodeError(f"the event cannot be written as JSON: {exc}") from exc


class AvroEncoder(Encoder):
    """Bare Avro binary with the bundled schema. Keys the schema lacks are dropped."""

    def __init__(self) -> None:
        self._schema = avro.reader_schema()

    def encode(self, event: Mapping[str, Any]) -> bytes:
        record = to_avro_record(event)
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, self._schema, record)
        except (TypeError, ValueError) as exc:  # e.g. a string with a lone surrogate
            raise EncodeError(f"the event cannot be written as Avro: {exc}") from exc
        return buf.getvalue()


class ConfluentAvroEncoder(AvroEncoder):
    """Confluent wire format; registers the bundled schema under ``subject`` on first use."""

    def __init__(self, registry: avro.SchemaRegistry, subject: str) -> None:
        super().__init__()
        self._registry = registry
        self._subject = subject
        self._header: bytes | None = None

    def encode(self, event: Mapping[str, Any]) -> bytes:
        if self._header is None:
            schema_id = self._registry.register(self._subject, avro.load_schema_text())
            self._header = avro.HEADER.pack(avro.MAGIC_BYTE, schema_id)
        return self._header + super().encode(event)

    def close(self) -> None:
        self._registry.close()


class ConfluentJsonEncoder(JsonEncoder):
    """Confluent JSON Schema wire format: the header, then compact JSON. Registers
    ``IDENTIFY_JSON_SCHEMA`` (schemaType JSON) under ``subject`` on first use."""

    def __init__(self, registry: avro.SchemaRegistry, subject: str) -> None:
        self._registry = registry
        self._subject = subject
        self._header: bytes | None = None

    def encode(self, event: Mapping[str, Any]) -> bytes:
        if self._header is None:
            schema_id = self._registry.register(self._subject, IDENTIFY_JSON_SCHEMA, "JSON")
            self._header = avro.HEADER.pack(avro.MAGIC_BYTE, schema_id)
        return self._header + super().encode(event)

    def close(self) -> None:
        self._registry.close()


def build_encoder(
    fmt: str, *, registry: avro.SchemaRegistry | None = None, topic: str | None = None
) -> Encoder:
    """The encoder for ``fmt``; confluent-avro and confluent-json need a registry and the topic
    (subject ``<topic>-value``, Confluent's TopicNameStrategy)."""
    if fmt == "json":
        return JsonEncoder()
    if fmt == "avro":
        return AvroEncoder()
    if fmt in ("confluent-avro", "confluent-json"):
        if registry is None or not topic:
            raise ValueError(f"{fmt} needs a schema registry and a topic")
        if fmt == "confluent-json":
            return ConfluentJsonEncoder(registry, f"{topic}-value")
        return ConfluentAvroEncoder(registry, f"{topic}-value")
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def encode_event(
    event: Mapping[str, Any],
    fmt: str,
    registry: avro.SchemaRegistry | None = None,
    topic: str | None = None,
) -> bytes:
    """One event in ``fmt``. For many events build one encoder with ``build_encoder``."""
    return build_encoder(fmt, registry=registry, topic=topic).encode(event)


def to_avro_record(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event as a record of the bundled schema (JSON values wrapped in JsonValueN)."""
    event_type = event.get("type")
    if not isinstance(event_type, str):
        raise EncodeError("type must be a string")
    record: dict[str, Any] = {"type": event_type}
    for name in _MESSAGE_FIELDS:
        value = event.get(name)
        if value is not None and not isinstance(value, str):
            raise EncodeError(f"{name} must be a string")
        record[name] = value
    version = event.get("version")
    if version is not None and not isinstance(version, str | int | float):
        raise EncodeError("version must be a string or a number")
    if isinstance(version, float) and not math.isfinite(version):
        raise EncodeError("version is NaN or infinite")
    record["version"] = segment_version(version) if version is not None else None
    for name in ("traits", "context", "integrations"):
        value = event.get(name)
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise EncodeError(f"{name} must be an object")
        record[name] = {_key(key): _wrap(item, 0) for key, item in value.items()}
    return record


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise EncodeError("object keys must be strings")
    return key


def _wrap(value: Any, depth: int) -> dict[str, Any]:
    """A JSON value as a JsonValue<depth> record, refusing what JSON or the schema cannot hold."""
    if value is None or isinstance(value, bool | str):
        return {"value": value}
    if isinstance(value, int):
        if not _LONG_MIN <= value <= _LONG_MAX:
            # fastavro would silently write it as a double and change its type.
            raise EncodeError("an integer does not fit in 64 bits")
        return {"value": value}
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EncodeError("NaN and infinity are not JSON")
        return {"value": value}
    if isinstance(value, Mapping | list | tuple):
        if depth >= avro.MAX_NESTING:
            raise EncodeError(f"values may nest at most {avro.MAX_NESTING} containers")
        if isinstance(value, Mapping):
            return {"value": {_key(k): _wrap(v, depth + 1) for k, v in value.items()}}
        return {"value": [_wrap(item, depth + 1) for item in value]}
    raise EncodeError(f"{type(value).__name__} is not a JSON type")
