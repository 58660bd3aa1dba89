"""A parsed Segment JSON object to a ``SegmentMessage``: the field rules every format ends in."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connector.events.avro import MAX_NESTING
from connector.events.reasons import DecodeReason, fail as _fail
from connector.models import SegmentMessage

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


def message_from_json_bytes(data: bytes) -> SegmentMessage:
    """A ``SegmentMessage`` from Segment JSON text (UTF-8), as the json formats carry it."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(DecodeReason.INVALID_UTF8, "the record value is not UTF-8") from None
    obj = parse_json(text, "the record value")
    if not isinstance(obj, dict):
        raise _fail(DecodeReason.NOT_AN_OBJECT, "the JSON value is not an object")
    return message_from_json(obj)


def parse_json(text: str, what: str) -> Any:
    """Strict JSON: no NaN/Infinity, no lone UTF-16 surrogate escapes, bounded recursion."""
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise _fail(DecodeReason.TOO_DEEP, f"{what} nests too deeply") from None
    except ValueError:
        raise _fail(DecodeReason.INVALID_JSON, f"{what} is not valid JSON") from None
    # "\ud800" escapes decode to lone surrogates, which cannot be sent on as UTF-8 later.
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(obj):
        raise _fail(DecodeReason.INVALID_UTF8, f"{what} escapes a lone UTF-16 surrogate")
    return obj


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
            value = _text_of_number(camel, value)
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


_TIMESTAMP_FIELDS = frozenset({"timestamp", "sentAt", "receivedAt", "originalTimestamp"})
# Epoch numbers above this are milliseconds (1973 in ms; year 5138 in seconds).
_EPOCH_MS_ABOVE = 100_000_000_000


def _text_of_number(name: str, value: Any) -> str:
    """Segment's libraries accept a numeric userId and an epoch timestamp; the mapping works on
    text. An integral number becomes its digits, an epoch number (seconds or milliseconds) an
    ISO-8601 UTC time; anything else is not a Segment field."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(DecodeReason.INVALID_FIELD, f"{name} must be a string")
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(DecodeReason.INVALID_NUMBER, f"{name} is NaN or infinite")
    if name in _TIMESTAMP_FIELDS:
        seconds = value / 1000 if abs(value) > _EPOCH_MS_ABOVE else float(value)
        try:
            moment = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise _fail(DecodeReason.INVALID_FIELD, f"{name} is not a time") from None
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, float) and not value.is_integer():
        raise _fail(DecodeReason.INVALID_FIELD, f"{name} must be a string or a whole number")
    return str(int(value))


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
        _check_json_value(item, MAX_NESTING)
    return value


def _check_json_value(value: Any, budget: int) -> None:
    """Same limits as the Avro schema: at most MAX_NESTING containers deep, finite numbers."""
    kind = type(value)
    if kind is dict or kind is list:
        if budget == 0:
            raise _fail(DecodeReason.TOO_DEEP, f"a value nests more than {MAX_NESTING} containers")
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
