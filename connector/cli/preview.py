"""`inkit-connector preview`: show the Inkit request each event on stdin would become."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any, BinaryIO, TextIO

from connector.errors import ConnectorError
from connector.events.decoding import build_decoder
from connector.events.mapping import Mapper
from connector.models import InkitRequest, SegmentMessage, Skip
from connector.settings import Settings

PREVIEW_FORMATS = ("json", "avro", "confluent-avro")


def run_preview(settings: Settings, fmt: str, stdin: BinaryIO, stdout: TextIO) -> int:
    """Decode and map every event on ``stdin``; print one JSON line per event on ``stdout``.

    Input is one record per line: Segment JSON for ``json``; for ``avro`` and
    ``confluent-avro`` the record's bytes in standard base64 (binary records have no natural
    line framing). Blank lines are ignored. Each output line is the redacted request
    (``method``, ``url``, ``headers``, ``body``), ``{"skip": reason}`` or ``{"error": {"class",
    "reason", "detail"}}``. Sends nothing to Inkit; a ``confluent-avro`` preview does read the
    schema registry. Returns 0 once the input was read to the end, 1 if it could not be read.
    """
    if fmt not in PREVIEW_FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    decoder = build_decoder(_with_format(settings, fmt))
    mapper = Mapper(settings)
    try:
        for line in stdin:
            line = line.strip()
            if not line:
                continue
            result = _preview_one(line, fmt, decoder.decode, mapper)
            stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    except OSError:
        return 1
    finally:
        decoder.close()
    return 0


def _preview_one(
    line: bytes, fmt: str, decode: Callable[[bytes | None], SegmentMessage], mapper: Mapper
) -> dict[str, Any]:
    if fmt == "json":
        value = line
    else:
        try:
            value = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            return _error("InputError", "invalid_base64", "the line is not standard base64")
    try:
        outcome = mapper.map(decode(value))
    except ConnectorError as exc:
        return _error(type(exc).__name__, exc.reason, exc.detail)
    if isinstance(outcome, Skip):
        return {"skip": outcome.reason}
    return request_as_dict(outcome)


def request_as_dict(request: InkitRequest) -> dict[str, Any]:
    """The request as preview prints it, with the API key redacted."""
    shown = request.redacted()
    return {"method": "POST", "url": shown.url, "headers": shown.headers, "body": shown.body}


def _error(error_class: str, reason: str, detail: str) -> dict[str, Any]:
    return {"error": {"class": error_class, "reason": reason, "detail": detail}}


def _with_format(settings: Settings, fmt: str) -> Settings:
    return replace(settings, value_format=fmt)
