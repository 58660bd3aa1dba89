"""Kafka record values to SegmentMessage: the json, avro and confluent-avro decoders."""

from __future__ import annotations

import io
import json
import math
import re
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

import fastavro
import httpx
from fastavro import _read_py  # pure-Python reader: raises RecursionError instead of crashing
from fastavro.read import SchemaResolutionError

from connector.errors import ConfigError, DecodeError
from connector.events import avro
from connector.models import SegmentMessage
from connector.settings import Settings

# Kafka's default message.max.bytes is about 1 MB; Segment itself caps an event at 32 kB.
MAX_RECORD_BYTES = 1_048_576

Reader = Callable[..., Any]


class DecodeReason(StrEnum):
    """Why a record could not be decoded. A closed set: used as a metric label and DLQ header."""

    TOMBSTONE = "tombstone"  # the record value is null (a compaction tombstone)
    EMPTY_VALUE = "empty_value"
    TOO_LARGE = "too_large"
    BAD_MAGIC_BYTE = "bad_magic_byte"
    UNKNOWN_SCHEMA_ID = "unknown_schema_id"
    INVALID_WRITER_SCHEMA = "invalid_writer_schema"
    TRUNCATED = "truncated"
    TRAILING_BYTES = "trailing_bytes"
    INVALID_AVRO = "invalid_avro"
    TYPE_MISMATCH = "type_mismatch"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_TYPE = "missing_type"
    MISSING_IDENTITY = "missing_identity"
    INVALID_FIELD = "invalid_field"
    INVALID_NUMBER = "invalid_number"
    TOO_DEEP = "too_deep"


def _fail(reason: DecodeReason, detail: str) -> DecodeError:
    return DecodeError(detail, reason=reason.value)


class Decoder(ABC):
    """Turns one Kafka record value into a ``SegmentMessage``. Built once, called per record.

    ``decode`` raises ``DecodeError`` (its ``reason`` is a ``DecodeReason``) when the record can
    never be read, and ``RegistryUnavailable`` when the schema registry cannot be reached (retry
    later; not the record's fault). It raises nothing else, whatever the bytes. It blocks only on
    the first record of a new schema id (one registry call).
    """

    def __init__(self, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self._max_record_bytes = max_record_bytes

    @abstractmethod
    def decode(self, value: bytes | None) -> SegmentMessage: ...

    def close(self) -> None:  # noqa: B027 - optional hook; most decoders own nothing
        """Release what the decoder owns (the registry's HTTP client, if it created one)."""

    def _checked(self, value: bytes | None) -> bytes:
        if value is None:
            raise _fail(DecodeReason.TOMBSTONE, "the record value is null (tombstone)")
        if not value:
            raise _fail(DecodeReason.EMPTY_VALUE, "the record value is empty")
        # Checked before parsing: fastavro trusts length prefixes, json trusts nothing less.
        if len(value) > self._max_record_bytes:
            raise _fail(
                DecodeReason.TOO_LARGE,
                f"the record value is {len(value)} bytes; the limit is {self._max_record_bytes}",
            )
        return value


class JsonDecoder(Decoder):
    """Segment's own JSON (camelCase keys, as its HTTP API and webhooks emit it), UTF-8."""

    def decode(self, value: bytes | None) -> SegmentMessage:
        data = self._checked(value)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(DecodeReason.INVALID_UTF8, "the record value is not UTF-8") from None
        try:
            obj = json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            raise _fail(DecodeReason.TOO_DEEP, "the JSON nests too deeply") from None
        except ValueError:
            raise _fail(DecodeReason.INVALID_JSON, "the record value is not valid JSON") from None
        # "\ud800" escapes decode to lone surrogates, which cannot be sent on as UTF-8 later.
        if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(obj):
            raise _fail(DecodeReason.INVALID_UTF8, "the JSON escapes a lone UTF-16 surrogate")
        if not isinstance(obj, dict):
            raise _fail(DecodeReason.NOT_AN_OBJECT, "the JSON value is not an object")
        return message_from_json(obj)


class AvroDecoder(Decoder):
    """Bare Avro binary written with the bundled schema (``schemas/identify.avsc``)."""

    def __init__(self, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        super().__init__(max_record_bytes)
        self._schema = avro.reader_schema()

    def decode(self, value: bytes | None) -> SegmentMessage:
        data = self._checked(value)
        return message_from_avro(_read(data, 0, fastavro.schemaless_reader, self._schema, None))


class ConfluentAvroDecoder(Decoder):
    """Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro body.

    The writer schema comes from the registry (once per id) and is resolved against the bundled
    reader schema, so producers may add or drop optional fields.
    """

    def __init__(
        self, registry: avro.SchemaRegistry, max_record_bytes: int = MAX_RECORD_BYTES
    ) -> None:
        super().__init__(max_record_bytes)
        self._registry = registry
        self._reader = avro.reader_schema()

    def close(self) -> None:
        self._registry.close()

    def decode(self, value: bytes | None) -> SegmentMessage:
        data = self._checked(value)
        if data[0] != avro.MAGIC_BYTE:
            raise _fail(DecodeReason.BAD_MAGIC_BYTE, f"magic byte is {data[0]}, expected 0")
        if len(data) < avro.HEADER.size:
            raise _fail(DecodeReason.TRUNCATED, "the record is shorter than the 5-byte header")
        _, schema_id = avro.HEADER.unpack_from(data)
        try:
            writer = self._registry.writer_schema(schema_id)
        except avro.SchemaNotFound:
            raise _fail(
                DecodeReason.UNKNOWN_SCHEMA_ID, f"schema id {schema_id} is not in the registry"
            ) from None
        except avro.InvalidSchema as exc:
            raise _fail(DecodeReason.INVALID_WRITER_SCHEMA, str(exc)) from None
        if writer.same_as_reader:
            record = _read(data, avro.HEADER.size, fastavro.schemaless_reader, self._reader, None)
        else:
            read = (
                _read_py.schemaless_reader
                if writer.needs_safe_reader
                else fastavro.schemaless_reader
            )
            record = _read(data, avro.HEADER.size, read, writer.parsed, self._reader)
        return message_from_avro(record)


def build_decoder(
    settings: Settings,
    http_client: httpx.Client | None = None,
    *,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Decoder:
    """The decoder for ``settings.value_format``. ``http_client`` is for the schema registry."""
    if settings.value_format == "json":
        return JsonDecoder(max_record_bytes)
    if settings.value_format == "avro":
        return AvroDecoder(max_record_bytes)
    if settings.value_format == "confluent-avro":
        if not settings.schema_registry_url:
            raise ConfigError("KAFKA_VALUE_FORMAT=confluent-avro needs SCHEMA_REGISTRY_URL")
        registry = avro.SchemaRegistry(
            settings.schema_registry_url, settings.schema_registry_user_info, http_client
        )
        return ConfluentAvroDecoder(registry, max_record_bytes)
    raise ValueError(f"unknown value format {settings.value_format!r}")


def _read(data: bytes, offset: int, read: Reader, writer: Any, reader: Any) -> dict[str, Any]:
    """Run a fastavro reader over ``data[offset:]``, translating every failure it can raise."""
    buf = io.BytesIO(data)
    buf.seek(offset)
    try:
        record: dict[str, Any] = read(buf, writer, reader)
    except EOFError:
        raise _fail(DecodeReason.TRUNCATED, "the Avro body ends early") from None
    except UnicodeDecodeError:  # before ValueError, its parent
        raise _fail(DecodeReason.INVALID_UTF8, "an Avro string is not UTF-8") from None
    except SchemaResolutionError:
        raise _fail(
            DecodeReason.TYPE_MISMATCH, "the writer schema does not resolve to the reader schema"
        ) from None
    except RecursionError:
        raise _fail(DecodeReason.TOO_DEEP, "the Avro body nests too deeply") from None
    except MemoryError:
        raise _fail(DecodeReason.TOO_LARGE, "an Avro length prefix is absurdly large") from None
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, struct.error):
        # Bad union index, negative length, varint too long...: corrupt bytes.
        raise _fail(DecodeReason.INVALID_AVRO, "the Avro body is corrupt") from None
    if buf.tell() != len(data):
        raise _fail(
            DecodeReason.TRAILING_BYTES,
            f"{len(data) - buf.tell()} bytes follow the Avro record (wrong schema?)",
        )
    return record


def message_from_avro(record: Mapping[str, Any]) -> SegmentMessage:
    """A ``SegmentMessage`` from a record read with the bundled reader schema."""
    event_type: str = record["type"]
    if not event_type.strip():
        raise _fail(DecodeReason.MISSING_TYPE, "the message has an empty type")
    user_id = record["userId"] or None
    anonymous_id = record["anonymousId"] or None
    if user_id is None and anonymous_id is None:
        raise _fail(DecodeReason.MISSING_IDENTITY, "the message has neither userId nor anonymousId")
    return SegmentMessage(
        type=event_type,
        user_id=user_id,
        anonymous_id=anonymous_id,
        message_id=record["messageId"],
        timestamp=record["timestamp"],
        sent_at=record["sentAt"],
        received_at=record["receivedAt"],
        original_timestamp=record["originalTimestamp"],
        traits=_unwrap_map(record["traits"]),
        context=_unwrap_map(record["context"]),
        integrations=_unwrap_map(record["integrations"]),
        version=record["version"],
        channel=record["channel"],
    )


def _unwrap_map(wrapped: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _unwrap(item) for key, item in wrapped.items()}


def _unwrap(wrapped: Mapping[str, Any]) -> Any:
    """A JsonValueN record back to the plain JSON value. Depth is bounded by the reader schema."""
    value = wrapped["value"]
    kind = type(value)
    if kind is dict:
        return {key: _unwrap(item) for key, item in value.items()}
    if kind is list:
        return [_unwrap(item) for item in value]
    if kind is float and not math.isfinite(value):
        raise _fail(DecodeReason.INVALID_NUMBER, "a number is NaN or infinite")
    return value


# Segment's camelCase names, with the snake_case spelling some pipelines use as a fallback
# (Segment: "the casing on these fields will vary by customer").
_ID_FIELDS = (
    ("userId", "user_id"),
    ("anonymousId", "anonymous_id"),
    ("messageId", "message_id"),
    ("timestamp", "timestamp"),
    ("sentAt", "sent_at"),
    ("receivedAt", "received_at"),
    ("originalTimestamp", "original_timestamp"),
    ("channel", "channel"),
)


def message_from_json(obj: Mapping[str, Any]) -> SegmentMessage:
    """A ``SegmentMessage`` from a parsed Segment JSON object; ``DecodeError`` if it is not one."""
    event_type = obj.get("type")
    if not isinstance(event_type, str) or not event_type.strip():
        raise _fail(DecodeReason.MISSING_TYPE, "the message has no type string")
    fields: dict[str, str | None] = {}
    for camel, snake in _ID_FIELDS:
        value = obj.get(camel)
        if value is None:
            value = obj.get(snake)
        if value is not None and not isinstance(value, str):
            raise _fail(DecodeReason.INVALID_FIELD, f"{camel} must be a string")
        fields[camel] = value
    user_id = fields["userId"] or None
    anonymous_id = fields["anonymousId"] or None
    if user_id is None and anonymous_id is None:
        raise _fail(DecodeReason.MISSING_IDENTITY, "the message has neither userId nor anonymousId")
    return SegmentMessage(
        type=event_type,
        user_id=user_id,
        anonymous_id=anonymous_id,
        message_id=fields["messageId"],
        timestamp=fields["timestamp"],
        sent_at=fields["sentAt"],
        received_at=fields["receivedAt"],
        original_timestamp=fields["originalTimestamp"],
        traits=_json_object(obj, "traits"),
        context=_json_object(obj, "context"),
        integrations=_json_object(obj, "integrations"),
        version=segment_version(obj.get("version")),
        channel=fields["channel"],
    )


def segment_version(value: Any) -> str | None:
    """Segment's ``version`` as text: examples show both ``"1.1"`` and ``2``."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(DecodeReason.INVALID_NUMBER, "version is NaN or infinite")
        return str(value)
    raise _fail(DecodeReason.INVALID_FIELD, "version must be a string or a number")


def _json_object(obj: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = obj.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(DecodeReason.INVALID_FIELD, f"{name} must be an object")
    for item in value.values():
        _check_json_value(item, avro.MAX_NESTING)
    return value


def _check_json_value(value: Any, budget: int) -> None:
    """Same limits as the Avro schema: at most MAX_NESTING containers deep, finite numbers."""
    kind = type(value)
    if kind is dict or kind is list:
        if budget == 0:
            raise _fail(
                DecodeReason.TOO_DEEP, f"a value nests more than {avro.MAX_NESTING} containers"
            )
        for item in value.values() if kind is dict else value:
            _check_json_value(item, budget - 1)
    elif kind is float and not math.isfinite(value):
        raise _fail(DecodeReason.INVALID_NUMBER, "a number is too large for a double")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _has_lone_surrogate(obj: Any) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
