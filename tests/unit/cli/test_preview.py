"""`preview`: one JSON line per input event, secrets redacted, errors as data."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import replace
from typing import Any

import pytest

from connector import __version__
from connector.cli.preview import run_preview
from connector.events.encoding import encode_event
from connector.models import InkitMode
from connector.settings import DEFAULT_RENDER_URL, DEFAULT_WEBHOOK_URL, Settings

KEY = "key_live_123"
AGENT = f"inkit-connector/{__version__}"
SETTINGS = Settings(bootstrap_servers="k:9092", topic="t", inkit_api_key=KEY)
EVENT = {
    "type": "identify",
    "userId": "u-1",
    "messageId": "m-1",
    "traits": {"template_id": "tmpl_1"},
}


def preview(lines: list[bytes], fmt: str = "json", settings: Settings = SETTINGS) -> list[Any]:
    out = io.StringIO()
    assert run_preview(settings, fmt, io.BytesIO(b"\n".join(lines) + b"\n"), out) == 0
    assert KEY not in out.getvalue()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines() -> None:
    lines = [
        json.dumps(EVENT).encode(),
        b"",  # blank lines are ignored
        json.dumps({**EVENT, "type": "track"}).encode(),
        b"{oops",
        json.dumps({**EVENT, "traits": {}}).encode(),
    ]
    assert preview(lines) == [
        {
            "method": "POST",
            "url": DEFAULT_WEBHOOK_URL,
            "headers": {"Content-Type": "application/json", "User-Agent": AGENT},
            "body": {
                "api_token": "[REDACTED]",
                "template_id": "tmpl_1",
                "segment_user_id": "u-1",
                "segment_message_id": "m-1",
            },
        },
        {"skip": "not_identify"},
        {
            "error": {
                "class": "DecodeError",
                "reason": "invalid_json",
                "detail": "the record value is not valid JSON",
            }
        },
        {
            "error": {
                "class": "MappingError",
                "reason": "missing_template_id",
                "detail": "no template_id trait and no INKIT_TEMPLATE_ID setting",
            }
        },
    ]


def test_render_mode_redacts_the_header() -> None:
    settings = replace(SETTINGS, inkit_mode=InkitMode.RENDER, inkit_api_url=DEFAULT_RENDER_URL)
    [shown] = preview([json.dumps(EVENT).encode()], settings=settings)
    assert shown["headers"]["X-Inkit-API-Token"] == "[REDACTED]"
    assert shown["body"]["merge_parameters"] == {}


def test_avro_records_one_base64_line_each() -> None:
    record = base64.b64encode(encode_event(EVENT, "avro"))
    shown = preview([record, b"not base64!", base64.b64encode(b"\x02")], fmt="avro")
    assert shown[0]["body"]["template_id"] == "tmpl_1"
    assert shown[1] == {
        "error": {
            "class": "InputError",
            "reason": "invalid_base64",
            "detail": "the line is not standard base64",
        }
    }
    assert shown[2]["error"]["class"] == "DecodeError"


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        run_preview(SETTINGS, "xml", io.BytesIO(b""), io.StringIO())
