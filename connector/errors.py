"""Exceptions raised on purpose by the connector. Catch the narrowest one you can handle.

ConnectorError
├── ConfigError           invalid settings: one line on stderr, exit 2 at start-up
├── RecordError           this record can never succeed: dead-letter (or skip), then commit past it
│   ├── DecodeError       the bytes are not a Segment message we can read (reason: DecodeReason)
│   ├── MappingError      the event lacks what Inkit needs, or fails Inkit's documented rules
│   ├── RejectedError     Inkit answered a 4xx other than 401/403/408/429 (or 501)
│   └── AmbiguousSend     the request may have reached Inkit, its answer never came, and
│                         AMBIGUOUS_SEND_POLICY=dead-letter says: never twice
├── TransientError        retry the same record later
│   ├── InkitUnavailable  5xx, 408, timeout, connection error
│   ├── RateLimited       429; .retry_after in seconds when Inkit said so
│   └── RegistryUnavailable  the schema registry could not be reached (not the record's fault)
├── AuthError             401/403: the key is wrong or revoked; pause everything, readiness false
├── ConsumerError         librdkafka reported an error we cannot continue from
├── DeadLetterScanError   the dead-letter topic could not be read back at assignment (logged;
│                         a copy may then be written twice)
└── StartupError          a service the connector needs is unreachable at start-up: exit 1

Every error carries a short machine-readable ``reason`` (a snake_case code used in metric labels
and dead-letter headers) and a human ``detail``. Neither ever contains a trait value or a secret.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Root of every exception the connector raises on purpose."""

    reason: str = "error"

    def __init__(self, detail: str = "", *, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        self.detail = detail
        super().__init__(f"{self.reason}: {detail}" if detail else self.reason)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, detail={self.detail!r})"


class ConfigError(ConnectorError):
    """A setting is missing or invalid; raised at start-up, never at the first record."""

    reason = "config"


class RecordError(ConnectorError):
    """The record can never succeed: it is dead-lettered, then its offset is committed."""

    reason = "record_error"
    error_class = "record"


class DecodeError(RecordError):
    """The record's bytes could not be decoded into a Segment message."""

    reason = "decode_error"
    error_class = "decode"


class MappingError(RecordError):
    """The event cannot become a valid Inkit request (missing template id, bad address, ...)."""

    reason = "mapping_error"
    error_class = "mapping"


class RejectedError(RecordError):
    """Inkit rejected the request for good (400, 404, 422, 501, ...)."""

    reason = "rejected"
    error_class = "http"

    def __init__(self, status: int, excerpt: str = "") -> None:
        super().__init__(f"Inkit answered HTTP {status}", reason=f"http_{status}")
        self.status = status
        self.excerpt = excerpt


class AmbiguousSend(RecordError):
    """The request may have been sent and no answer came (a read timeout, a dropped connection,
    a previous owner's crash mid-send): under AMBIGUOUS_SEND_POLICY=dead-letter a person
    decides (``redrive``), rather than risk a second letter."""

    reason = "ambiguous_send"
    error_class = "http"

    def __init__(self, cause: str) -> None:
        super().__init__(f"the request may have reached Inkit ({cause})", reason="ambiguous_send")
        self.cause = cause


class TransientError(ConnectorError):
    """Retry the same record later, with backoff."""

    reason = "transient"


class InkitUnavailable(TransientError):
    """Inkit failed in a way that may pass: 5xx (not 501), 408, timeout, connection error.
    ``ambiguous``: the request may have reached Inkit (see inkit/client.py)."""

    reason = "unavailable"

    def __init__(
        self,
        reason: str,
        status: int | None = None,
        retry_after: float | None = None,
        *,
        ambiguous: bool = False,
    ):
        super().__init__(f"Inkit unavailable ({reason})", reason=reason)
        self.status = status
        self.retry_after = retry_after
        self.ambiguous = ambiguous


class RateLimited(TransientError):
    """Inkit answered 429; ``retry_after`` is the delay it asked for, in seconds, if any."""

    reason = "rate_limited"

    def __init__(self, retry_after: float | None) -> None:
        super().__init__(f"Inkit rate limit; retry after {retry_after}s")
        self.status = 429
        self.retry_after = retry_after


class RegistryUnavailable(TransientError):
    """The schema registry could not be reached or answered 5xx: not the record's fault."""

    reason = "registry_unavailable"


class AuthError(ConnectorError):
    """Inkit answered 401 or 403: the API key is wrong or revoked."""

    reason = "auth"

    def __init__(self, status: int) -> None:
        super().__init__(f"Inkit refused the API key (HTTP {status})", reason=f"http_{status}")
        self.status = status


class ConsumerError(ConnectorError):
    """librdkafka reported a fatal error, or a commit failed in a way we cannot continue from."""

    reason = "consumer"


class DeadLetterScanError(ConnectorError):
    """The dead-letter topic could not be read to its end at assignment (see dlq_recovery.py)."""

    reason = "dead_letter_scan"


class StartupError(ConnectorError):
    """A dependency (brokers, topic, schema registry) is missing or unreachable at start-up."""

    reason = "startup"
