"""Why a record value could not be read: the closed set of decode reasons."""

from __future__ import annotations

from enum import StrEnum

from connector.errors import DecodeError


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


def fail(reason: DecodeReason, detail: str) -> DecodeError:
    """The ``DecodeError`` to raise for ``reason``. ``detail`` never holds record content."""
    return DecodeError(detail, reason=reason.value)
