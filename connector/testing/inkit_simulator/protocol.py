"""What the simulated API speaks: paths, fault settings, recorded requests, and Inkit's
documented field validation."""

from __future__ import annotations

import dataclasses
import json
import re
import string
from dataclasses import dataclass
from typing import Any, Literal

WEBHOOK_PATH = "/integrations/webhook"


RENDER_PATH = "/v1/render"


CONTROL_PREFIX = "/_sim/"


API_KEY_HEADER = b"x-inkit-api-token"


MAX_HEAD_BYTES = 64 * 1024


MAX_BODY_BYTES = 1024 * 1024


ADDRESS_LINE_MAX_CHARS = 64


ADDRESS_FIELDS = (
    "address_line_1",
    "address_city",
    "address_state",
    "address_zip",
    "address_country",
)


_BASE62 = string.digits + string.ascii_letters


_STATE_RE = re.compile(r"[A-Za-z]{2}")


_COUNTRY_RE = re.compile(r"[A-Z]{2}")


_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Faults:
    """Fault configuration; immutable, so swap a new one in with `InkitSimulator.set_faults`.

    Rates are probabilities drawn once per request (control calls under /_sim/ are exempt) from a
    single uniform number, so they are mutually exclusive and their sum must be <= 1. Latency
    applies before every answer except drops and hangs. An outage (503, or 401 for a revoked key)
    overrides everything until `outage_until` (unix time; None means until cleared).
    `max_rate_per_s` models an account-wide rate limit: a request is answered 429 (with
    Retry-After `retry_after_s`) when that many requests already passed the limit within the last
    second; refused requests do not count against it. It applies after the random faults.
    """

    latency_ms: float = 0.0
    latency_max_ms: float | None = None
    rate_429: float = 0.0
    retry_after_s: float = 1.0
    rate_5xx: float = 0.0
    statuses_5xx: tuple[int, ...] = (500, 502, 503)
    rate_hang: float = 0.0
    hang_s: float = 30.0
    rate_drop: float = 0.0
    outage_status: int | None = None
    outage_until: float | None = None
    max_rate_per_s: float | None = None
    # Templates Inkit does not know (a wrong INKIT_TEMPLATE_ID): answered 422, as Inkit answers
    # a body that does not pass validation. Clear it to "fix" the template.
    rejected_templates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        rates = (self.rate_429, self.rate_5xx, self.rate_hang, self.rate_drop)
        if any(not 0.0 <= r <= 1.0 for r in rates) or sum(rates) > 1.0 + 1e-9:
            raise ValueError("fault rates must each be in [0, 1] and sum to at most 1")
        if self.latency_ms < 0 or (
            self.latency_max_ms is not None and self.latency_max_ms < self.latency_ms
        ):
            raise ValueError("latency must be >= 0 and latency_max_ms >= latency_ms")
        if not self.statuses_5xx or any(not 500 <= s <= 599 for s in self.statuses_5xx):
            raise ValueError("statuses_5xx must be a non-empty tuple of 5xx codes")
        if self.max_rate_per_s is not None and self.max_rate_per_s <= 0:
            raise ValueError("max_rate_per_s must be positive")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["statuses_5xx"] = list(self.statuses_5xx)
        d["rejected_templates"] = list(self.rejected_templates)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        """Build from JSON; raises ValueError/TypeError on unknown keys or bad values."""
        data = dict(data)
        if "statuses_5xx" in data:
            data["statuses_5xx"] = tuple(data["statuses_5xx"])
        if "rejected_templates" in data:
            data["rejected_templates"] = tuple(data["rejected_templates"])
        return cls(**data)

    def outage_active(self, now: float) -> bool:
        return self.outage_status is not None and (
            self.outage_until is None or now < self.outage_until
        )


@dataclass(frozen=True)
class RecordedRequest:
    """One accepted (2xx) Inkit request. `seq` counts from 1 in acceptance order; `arrival` is the
    unix time the request was fully read; `body` is the parsed JSON without `api_token`."""

    seq: int
    arrival: float
    path: str
    body: dict[str, Any]
    render_id: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecordedRequest:
        return cls(**data)


class _BadRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class _Request:
    method: str
    target: str
    headers: dict[bytes, bytes]
    body: bytes
    keep_alive: bool
    arrival: float
    error: _BadRequestError | None = None  # set when the bytes were not a valid request


# What happens to one request, decided before any waiting: the fault draw and the latency.
_Fault = Literal["none", "drop", "hang", "429", "5xx"]


@dataclass(slots=True)
class _Plan:
    delay_s: float
    fault: _Fault
    status_5xx: int = 500


_NO_PLAN = _Plan(0.0, "none")


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _error(status: int, message: str) -> tuple[int, bytes]:
    return status, _json_bytes({"error": message, "code": status})


def validate_fields(fields: dict[str, Any]) -> str | None:
    """Inkit's documented field rules; returns "<field>: <rule>" for the first failure, or None."""

    def present(name: str) -> bool:
        return fields.get(name) not in (None, "")

    for name in ("first_name", "last_name", *ADDRESS_FIELDS):
        if present(name) and not isinstance(fields[name], str):
            return f"{name}: must be a string"
    if present("address_line_1") and len(fields["address_line_1"]) > ADDRESS_LINE_MAX_CHARS:
        return f"address_line_1: at most {ADDRESS_LINE_MAX_CHARS} characters"
    if present("address_state") and not _STATE_RE.fullmatch(fields["address_state"]):
        return "address_state: must be a two-letter state code"
    if present("address_country") and not _COUNTRY_RE.fullmatch(fields["address_country"]):
        return "address_country: must be an ISO 3166-1 alpha-2 code"
    if any(present(n) for n in ADDRESS_FIELDS) and not (
        present("first_name") or present("last_name")
    ):
        return "first_name: first_name or last_name is required with an address"
    return None
