"""Kafka record values to SegmentMessage: the json, avro, confluent-avro and confluent-json
decoders."""

from __future__ import annotations

import functools
import io
import math
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

import fastavro
import httpx
from fastavro import _read_py  # pure-Python reader: raises RecursionError instead of crashing
from fastavro.read import SchemaResolutionError

from connector.errors import ConfigError, DecodeError
from connector.events import avro, shape
from connector.events.reasons import DecodeReason as DecodeReason, fail as _fail
from connector.events.segment import message_from_json_bytes
from connector.models import SegmentMessage
from connector.settings import Settings

# Kafka's default message.max.bytes is about 1 MB; Segment itself caps an event at 32 kB.
MAX_RECORD_BYTES = 1_048_576

Reader = Callable[..., Any]


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
        return message_from_json_bytes(self._checked(value))


class AvroBody:
    """How Avro bodies written with one writer schema are read. Built once per schema.

    A body written with the bundled schema is read with it directly (the fast path). Any other
    writer schema is read with itself alone, as a generic datum, then read by shape
    (``shape.message_from_datum``): a producer's own Segment-shaped schema needs no resolution
    against ours. ``message`` raises only ``DecodeError``.
    """

    def __init__(self, writer: avro.WriterSchema) -> None:
        self._fast = writer.same_as_reader
        self._convert: shape.Convert | None = None
        if self._fast:
            self._schema: Any = avro.reader_schema()
            self._read: Reader = fastavro.schemaless_reader
            return
        self._schema = writer.parsed
        base = (
            _read_py.schemaless_reader if writer.needs_safe_reader else fastavro.schemaless_reader
        )
        # Records in unions come back as (name, value), so the converter knows the branch.
        self._read = functools.partial(base, return_record_name=True)
        try:
            self._convert = shape.compile_converter(writer.parsed)
        except RecursionError:
            raise _fail(
                DecodeReason.INVALID_WRITER_SCHEMA,
                f"schema {writer.schema_id} nests too deeply to be read",
            ) from None

    def message(self, data: bytes, offset: int) -> SegmentMessage:
        record = _read(data, offset, self._read, self._schema, None)
        if self._convert is None:
            return message_from_avro(record)
        return shape.message_from_datum(record, self._convert)


class AvroDecoder(Decoder):
    """Bare Avro binary, written with the bundled schema (``schemas/identify.avsc``) or with the
    writer schema given (``AVRO_SCHEMA_FILE``), which is then read by shape."""

    def __init__(
        self, max_record_bytes: int = MAX_RECORD_BYTES, writer: avro.WriterSchema | None = None
    ) -> None:
        super().__init__(max_record_bytes)
        self._body = AvroBody(writer or avro.bundled_writer_schema())

    def decode(self, value: bytes | None) -> SegmentMessage:
        return self._body.message(self._checked(value), 0)


class _ConfluentDecoder(Decoder):
    """The Confluent wire format: magic byte 0, 4-byte big-endian schema id, then the body."""

    def __init__(
        self, registry: avro.SchemaRegistry, max_record_bytes: int = MAX_RECORD_BYTES
    ) -> None:
        super().__init__(max_record_bytes)
        self._registry = registry

    def close(self) -> None:
        self._registry.close()

    def _schema_id(self, data: bytes) -> int:
        if data[0] != avro.MAGIC_BYTE:
            # "{" (123) or whitespace first: Segment JSON, the commonest mix-up; say so.
            looks = "; the value looks like JSON" if data.lstrip()[:1] == b"{" else ""
            raise _fail(DecodeReason.BAD_MAGIC_BYTE, f"magic byte is {data[0]}, expected 0{looks}")
        if len(data) < avro.HEADER.size:
            raise _fail(DecodeReason.TRUNCATED, "the record is shorter than the 5-byte header")
        schema_id: int = avro.HEADER.unpack_from(data)[1]
        return schema_id


def _registry_failure(schema_id: int, exc: Exception) -> DecodeError:
    if isinstance(exc, avro.SchemaNotFound):
        return _fail(
            DecodeReason.UNKNOWN_SCHEMA_ID,
            f"schema id {schema_id} (or a schema it references) is not in the registry",
        )
    return _fail(DecodeReason.INVALID_WRITER_SCHEMA, str(exc))


class ConfluentAvroDecoder(_ConfluentDecoder):
    """Confluent Avro: the body is read with its writer schema from the registry.

    The writer schema (and the schemas it references) is fetched, parsed and compiled once per
    id. Our bundled schema takes the fast path; any other Segment-shaped schema is read by shape.
    """

    def __init__(
        self, registry: avro.SchemaRegistry, max_record_bytes: int = MAX_RECORD_BYTES
    ) -> None:
        super().__init__(registry, max_record_bytes)
        self._bodies: dict[int, AvroBody | DecodeError] = {}

    def decode(self, value: bytes | None) -> SegmentMessage:
        data = self._checked(value)
        schema_id = self._schema_id(data)
        body = self._bodies.get(schema_id)
        if body is None:
            body = self._body(schema_id)
        if isinstance(body, DecodeError):
            # A fresh error per record: re-raising one cached instance would grow its traceback.
            raise DecodeError(body.detail, reason=body.reason)
        return body.message(data, avro.HEADER.size)

    def _body(self, schema_id: int) -> AvroBody | DecodeError:
        try:
            writer = self._registry.writer_schema(schema_id)
        except avro.SchemaNotFound as exc:  # not cached: a lagging replica may know it soon
            raise _registry_failure(schema_id, exc) from None
        except avro.InvalidSchema as exc:
            body: AvroBody | DecodeError = _registry_failure(schema_id, exc)
        else:
            try:
                body = AvroBody(writer)
            except DecodeError as exc:
                body = exc.with_traceback(None)  # kept for ever: hold no frames
        self._bodies[schema_id] = body  # the schema behind an id never changes
        return body


class ConfluentJsonDecoder(_ConfluentDecoder):
    """Confluent JSON Schema wire format: the header, then Segment JSON (UTF-8).

    The schema id must name a JSON Schema in the registry (checked once per id); the body is
    then read exactly as the json format reads a value. The JSON Schema itself is not applied:
    Segment's own rules decide what is readable.
    """

    def decode(self, value: bytes | None) -> SegmentMessage:
        data = self._checked(value)
        schema_id = self._schema_id(data)
        try:
            self._registry.check_json_schema(schema_id)
        except (avro.SchemaNotFound, avro.InvalidSchema) as exc:
            raise _registry_failure(schema_id, exc) from None
        if len(data) == avro.HEADER.size:
            raise _fail(DecodeReason.EMPTY_VALUE, "the record has a header and no JSON")
        return message_from_json_bytes(data[avro.HEADER.size :])


def build_decoder(
    settings: Settings,
    http_client: httpx.Client | None = None,
    *,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Decoder:
    """The decoder for ``settings.value_format``. ``http_client`` is for the schema registry.
    Raises ``ConfigError`` when ``AVRO_SCHEMA_FILE`` cannot be read or is not a usable schema."""
    if settings.value_format == "json":
        return JsonDecoder(max_record_bytes)
    if settings.value_format == "avro":
        return AvroDecoder(max_record_bytes, _schema_file(settings.avro_schema_file))
    if settings.value_format in ("confluent-avro", "confluent-json"):
        if not settings.schema_registry_url:
            raise ConfigError(
                f"KAFKA_VALUE_FORMAT={settings.value_format} needs SCHEMA_REGISTRY_URL"
            )
        registry = avro.SchemaRegistry(
            settings.schema_registry_url, settings.schema_registry_user_info, http_client
        )
        if settings.value_format == "confluent-json":
            return ConfluentJsonDecoder(registry, max_record_bytes)
        return ConfluentAvroDecoder(registry, max_record_bytes)
    raise ValueError(f"unknown value format {settings.value_format!r}")


def _schema_file(path: str | None) -> avro.WriterSchema | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"AVRO_SCHEMA_FILE {path} cannot be read") from exc
    try:
        writer = avro.parse_writer_schema(0, text)
        AvroBody(writer)
    except (avro.InvalidSchema, DecodeError) as exc:
        raise ConfigError(f"AVRO_SCHEMA_FILE {path} is not a usable Avro record schema") from exc
    return writer


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
