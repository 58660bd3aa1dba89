"""Read a generic Avro datum by shape: any Segment-shaped writer schema to a ``SegmentMessage``.

A producer's own schema is read with that schema alone (no resolution against ours), then turned
into the JSON Segment would have sent, and that JSON goes through the same field rules as the
json format (``segment.message_from_json``). So one event becomes one Inkit request whatever
the shape it was written in. How each Avro type becomes JSON is compiled once per writer schema:

- record: an object of its fields (fields holding null are left out, as a JSON producer would
  not send them); a record named ``JsonValue...`` with the single field ``value`` (our bundled
  schema's wrapping) is its value;
- map: an object; array: a list; enum: its symbol; string, boolean, int, long: as they are;
  float, double: a number (NaN or infinity is refused later, ``invalid_number``);
- timestamp-millis / -micros: ISO-8601 UTC text with 3 / 6 fraction digits and ``Z``
  (``2024-05-01T10:00:00.000Z``); local-timestamp-*: the same without ``Z``; date:
  ``2024-05-01``; time-millis / -micros: ``10:00:00.000``; uuid: its text;
- decimal: a number (an integer when the scale is 0, else a double);
- bytes and fixed (without a logical type): standard base64 text, as Kafka Connect's
  JsonConverter writes them;
- union: the branch the record holds, converted as above.

Top-level fields are found by Segment's names and their snake_case spellings (``userId`` or
``user_id``...). ``traits``, ``context`` and ``integrations`` may be a map, a record, our
JsonValue wrapping, or a string holding a JSON object.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from connector.events.reasons import DecodeReason, fail
from connector.events.segment import message_from_json, parse_json
from connector.models import SegmentMessage

Convert = Callable[[Any], Any]

# Segment fields that hold a JSON object; in Avro also a string holding one.
OBJECT_FIELDS = ("traits", "context", "integrations")
# Segment fields that hold text (with their snake_case spellings); version may be a number.
_TEXT_FIELDS = (
    "type",
    "userId",
    "user_id",
    "anonymousId",
    "anonymous_id",
    "messageId",
    "message_id",
    "timestamp",
    "sentAt",
    "sent_at",
    "receivedAt",
    "received_at",
    "originalTimestamp",
    "original_timestamp",
    "channel",
)
_AVRO_NAMES = {
    bool: "a boolean",
    int: "a number",
    float: "a number",
    list: "an array",
    dict: "an object",
}


def _same(value: Any) -> Any:
    return value


def _iso(timespec: str) -> Convert:
    def convert(value: Any) -> Any:
        if not isinstance(value, datetime | time):
            return value  # a logical type fastavro did not apply: the plain value
        text = value.isoformat(timespec=timespec)
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return convert


def _date(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def _uuid(value: Any) -> Any:
    return str(value) if isinstance(value, UUID) else value


def _base64(value: Any) -> Any:
    return base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value


def _decimal(scale: int) -> Convert:
    def convert(value: Any) -> Any:
        if not isinstance(value, Decimal):
            return _base64(value)
        return int(value) if scale == 0 else float(value)

    return convert


_LOGICAL: dict[str, Convert] = {
    "timestamp-millis": _iso("milliseconds"),
    "timestamp-micros": _iso("microseconds"),
    "local-timestamp-millis": _iso("milliseconds"),
    "local-timestamp-micros": _iso("microseconds"),
    "time-millis": _iso("milliseconds"),
    "time-micros": _iso("microseconds"),
    "date": _date,
    "uuid": _uuid,
}
_PRIMITIVE: dict[str, tuple[type, Convert]] = {
    "null": (type(None), _same),
    "boolean": (bool, _same),
    "int": (int, _same),
    "long": (int, _same),
    "float": (float, _same),
    "double": (float, _same),
    "string": (str, _same),
    "bytes": (bytes, _base64),
}
# The Python type fastavro returns for each logical type, to pick a union's branch by value.
_LOGICAL_TYPE = {
    "timestamp-millis": datetime,
    "timestamp-micros": datetime,
    "local-timestamp-millis": datetime,
    "local-timestamp-micros": datetime,
    "time-millis": time,
    "time-micros": time,
    "date": date,
    "uuid": UUID,
    "decimal": Decimal,
}


class _Compiler:
    """Builds the converter of a parsed writer schema. Named types are compiled once; a
    recursive type refers to itself through a late-bound cell."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self._named = named
        self._done: dict[str, Convert] = {}

    def compile(self, schema: Any) -> Convert:
        return self._typed(schema)[1]

    def _typed(self, schema: Any) -> tuple[type, Convert]:
        """The Python type fastavro reads ``schema`` as, and its converter."""
        if isinstance(schema, str):
            if schema in _PRIMITIVE:
                return _PRIMITIVE[schema]
            return self._named_type(schema)
        if isinstance(schema, list):
            return object, self._union(schema)
        kind = schema.get("type")
        logical = schema.get("logicalType")
        if logical == "decimal":
            return Decimal, _decimal(int(schema.get("scale", 0)))
        if logical in _LOGICAL:
            return _LOGICAL_TYPE[logical], _LOGICAL[logical]
        if kind in ("record", "error"):
            return dict, self._record(schema)
        if kind == "enum":
            return str, _same
        if kind == "fixed":
            return bytes, _base64
        if kind == "map":
            values = self.compile(schema["values"])
            return dict, lambda m: {key: values(item) for key, item in m.items()}
        if kind == "array":
            items = self.compile(schema["items"])
            return list, lambda a: [items(item) for item in a]
        return self._typed(kind)  # {"type": "string"} and friends

    def _named_type(self, name: str) -> tuple[type, Convert]:
        definition = self._named[name]
        if isinstance(definition, dict) and definition.get("type") in ("record", "error"):
            return dict, self._record(definition)
        return self._typed(definition)

    def _record(self, schema: Mapping[str, Any]) -> Convert:
        name = str(schema["name"])
        if name in self._done:
            return self._done[name]
        cell: list[Convert] = []
        self._done[name] = lambda value: cell[0](value)  # for recursive references
        fields = [(f["name"], self.compile(f["type"])) for f in schema["fields"]]
        inner = fields[0][1] if len(fields) == 1 else _same

        def unwrap(value: Any) -> Any:
            return inner(value["value"])

        def as_object(value: Any) -> Any:
            out = {}
            for field_name, field_convert in fields:
                item = value[field_name]
                if item is not None:
                    out[field_name] = field_convert(item)
            return out

        wrapper = [f for f, _ in fields] == ["value"]
        convert = (
            unwrap if wrapper and name.rpartition(".")[2].startswith("JsonValue") else as_object
        )
        cell.append(convert)
        self._done[name] = convert
        return convert

    def _union(self, branches: list[Any]) -> Convert:
        # Records come as (name, value) pairs (fastavro's return_record_name); other branches
        # are told apart by the Python type fastavro returns (Avro allows one branch per
        # unnamed type; enums and strings both become text, fixed and bytes both base64).
        by_name: dict[str, Convert] = {}
        by_type: dict[type, Convert] = {}
        for branch in branches:
            definition = self._named.get(branch, branch) if isinstance(branch, str) else branch
            if isinstance(definition, dict) and definition.get("type") in ("record", "error"):
                by_name[str(definition["name"])] = self._record(definition)
            else:
                kind, branch_convert = self._typed(branch)
                by_type[kind] = branch_convert

        def pick(value: Any) -> Any:
            if value is None:
                return None
            if type(value) is tuple:
                return by_name[value[0]](value[1])
            return by_type.get(type(value), _same)(value)

        return pick


def compile_converter(parsed_schema: Mapping[str, Any]) -> Convert:
    """The converter from a datum of ``parsed_schema`` (fastavro-parsed, read with
    ``return_record_name=True``) to the JSON value Segment would carry. Built once per schema."""
    return _Compiler(parsed_schema.get("__named_schemas", {})).compile(parsed_schema)


def message_from_datum(datum: Mapping[str, Any], convert: Convert) -> SegmentMessage:
    """A ``SegmentMessage`` from a generic datum, read by shape (see the module docstring)."""
    try:
        obj = convert(datum)
    except RecursionError:
        raise fail(DecodeReason.TOO_DEEP, "the Avro value nests too deeply") from None
    if not isinstance(obj, dict):
        raise fail(DecodeReason.NOT_AN_OBJECT, "the writer schema's record is a bare JsonValue")
    for name in _TEXT_FIELDS:
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            raise fail(
                DecodeReason.TYPE_MISMATCH,
                f"the writer's {name} holds {_AVRO_NAMES.get(type(value), 'bytes')}, not a string",
            )
    for name in OBJECT_FIELDS:
        value = obj.get(name)
        if isinstance(value, str):
            obj[name] = _json_text(name, value)
        elif value is not None and not isinstance(value, dict):
            raise fail(
                DecodeReason.TYPE_MISMATCH,
                f"the writer's {name} holds {_AVRO_NAMES.get(type(value), 'a value')}, "
                "not a map, a record or JSON text",
            )
    return message_from_json(obj)


def _json_text(name: str, text: str) -> Any:
    """A string field holding JSON: the object it holds."""
    value = parse_json(text, f"the JSON text in {name}")
    if not isinstance(value, dict):
        raise fail(DecodeReason.INVALID_FIELD, f"{name} holds JSON text that is not an object")
    return value
