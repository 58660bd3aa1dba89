"""Plain value types shared by the modules: records, events, requests and outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True, slots=True, order=True)
class RecordRef:
    """Where a Kafka record lives. Kafka commits the *next* offset, so a commit is offset + 1."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class SegmentMessage:
    """A decoded Segment message (usually an Identify call), in Segment's own vocabulary.

    ``traits``, ``context`` and ``integrations`` hold JSON-like values (dict, list, str, int,
    float, bool, None) with their types preserved by every decoder.
    """

    type: str
    user_id: str | None = None
    anonymous_id: str | None = None
    message_id: str | None = None
    timestamp: str | None = None
    sent_at: str | None = None
    received_at: str | None = None
    original_timestamp: str | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    integrations: dict[str, Any] = field(default_factory=dict)
    version: str | None = None
    channel: str | None = None


class InkitMode(StrEnum):
    """Which Inkit API the connector calls."""

    WEBHOOK = "webhook"
    RENDER = "render"


@dataclass(frozen=True, slots=True)
class InkitRequest:
    """One HTTP request to Inkit, ready to send. ``body`` is the JSON object to POST.

    The API key sits in ``body['api_token']`` (webhook mode) or in the ``X-Inkit-API-Token``
    header (render mode): use ``redacted()`` before showing a request to anyone.
    """

    url: str
    headers: dict[str, str]
    body: dict[str, Any]
    message_id: str | None = None

    def redacted(self) -> InkitRequest:
        headers = {
            k: ("[REDACTED]" if k.lower() in _SECRET_HEADERS else v)
            for k, v in self.headers.items()
        }
        body = dict(self.body)
        if "api_token" in body:
            body["api_token"] = "[REDACTED]"  # noqa: S105 - the placeholder, not a secret
        return InkitRequest(self.url, headers, body, self.message_id)


_SECRET_HEADERS = frozenset({"x-inkit-api-token", "authorization"})


@dataclass(frozen=True, slots=True)
class Skip:
    """The event is valid but not for Inkit (not an identify, or disabled by ``integrations``)."""

    reason: str


class Outcome(StrEnum):
    """How a record finished. Used as a metric label: a closed set."""

    DELIVERED = "delivered"
    DEAD_LETTERED = "dead_lettered"
    SKIPPED = "skipped"


class AmbiguousPolicy(StrEnum):
    """AMBIGUOUS_SEND_POLICY: what a request whose outcome is unknown becomes. A metric label."""

    RESEND = "resend"  # retried: at least once, a letter may go twice
    DEAD_LETTER = "dead-letter"  # dead-lettered as ambiguous_send: never twice, a person decides
