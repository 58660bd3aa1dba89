"""InkitClient: sends one request over injected httpx transports and classifies the answer
into success or one of the connector's typed errors."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx

from connector import __version__
from connector.errors import AuthError, InkitUnavailable, RateLimited, RejectedError
from connector.inkit.retry import parse_retry_after
from connector.models import InkitRequest
from connector.observability.metrics import Metrics

EXCERPT_CHARS = 200
REDACTED = "[REDACTED]"
# Failures after which the request may have reached Inkit: the outcome is unknown. From httpx's
# exception tree (httpx/_exceptions.py, 0.28/0.29, the module docstring; also encode/httpx
# docs/exceptions.md) and httpcore's HTTP/1.1 connection (httpcore/_async/http11.py
# handle_async_request): the request line, headers and body are written first; a ReadTimeout,
# ReadError or RemoteProtocolError ("Server disconnected without sending a response") comes
# while the answer is awaited, so the server may have the whole request. httpcore swallows a
# WriteError while writing and goes on to read the answer (a server may answer early), and a
# WriteTimeout or WriteError that surfaces may still follow a partly written body. CloseError
# comes after the exchange; DecodingError means an answer came whose body could not be read.
# Not ambiguous (nothing was sent): ConnectError, ConnectTimeout, PoolTimeout (no connection
# was free), ProxyError, UnsupportedProtocol, LocalProtocolError (refused before sending).
# One known false alarm: a keep-alive connection the server closed while it sat idle in the
# pool fails with RemoteProtocolError although the server never read the request.
AMBIGUOUS_ERRORS: tuple[type[httpx.HTTPError], ...] = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.CloseError,
    httpx.RemoteProtocolError,
    httpx.DecodingError,
)
# What an httpx.AsyncClient would send on its own that still means something here.
_BASE_HEADERS: tuple[tuple[str, str], ...] = (
    ("User-Agent", f"inkit-connector/{__version__}"),
    ("Accept", "*/*"),
)
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
_URL_CACHE_SIZE = 64
# Strings shorter than this are not redacted from response excerpts: "CA" or "US" would blank
# out half of any error message, and two letters identify nobody.
_MIN_REDACT_LEN = 3


class InkitClient:
    """Posts ``InkitRequest``s to Inkit. One instance per process, used from one event loop.

    ``send`` returns the 2xx status, or raises: ``AuthError`` (401/403), ``RateLimited`` (429),
    ``InkitUnavailable`` (408, 5xx except 501, timeout, connection error, any other httpx
    error such as a body that cannot be decoded; ``ambiguous`` when the request may have
    reached Inkit, see ``AMBIGUOUS_ERRORS``) or ``RejectedError`` (any other status). It never
    retries: that is the sender's job.
    """

    def __init__(
        self,
        http: httpx.AsyncBaseTransport | Sequence[httpx.AsyncBaseTransport],
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        *,
        shard_size: int = 0,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        # Requests go straight to httpx transports, not through an ``httpx.AsyncClient``: the
        # client's layers (URL and header merging, cookies, auth and redirect flows, event
        # hooks) do nothing for these requests and cost about a quarter of httpx's CPU per
        # request (bench/floor.py --stack httpx-transport against --stack httpx: 1.07-1.18
        # against 1.45-1.56 ms; bench/RESULTS.md, issue #20). What they did that matters is here:
        # the timeouts, the User-Agent, reading and closing the response.
        #
        # Several small pools instead of one large one: httpcore scans its whole pool for every
        # request it queues or releases, so its cost per request grows with the pool. Shards of
        # a few connections keep it flat. A request goes to the first shard with a free
        # connection (``shard_size`` per shard), not round the shards, so that the spare idle
        # connections sit in shards nobody scans (counted with the anyio backend, whose check
        # of an idle connection is two system calls: 8.0 -> 4.5 checks per request at 4 in
        # flight, 4.7 -> 3.3 at 64; bench/RESULTS.md, issue #20).
        self._pool = [http] if isinstance(http, httpx.AsyncBaseTransport) else list(http)
        self._active = [0] * len(self._pool)
        self._shard_size = shard_size
        self._next = 0
        self._metrics = metrics
        self._clock = clock
        self._timeout = timeout.as_dict()
        self._urls: dict[str, httpx.URL] = {}

    def _shard(self) -> int:
        if self._shard_size > 0:
            for index, active in enumerate(self._active):
                if active < self._shard_size:
                    return index
        index = self._next  # every shard full (or sizes unknown): round the shards
        self._next = (index + 1) % len(self._pool)
        return index

    def _url(self, url: str) -> httpx.URL:
        """The parsed URL, kept: a deployment posts to one or two URLs, and parsing is a
        measurable part of a request's CPU."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= _URL_CACHE_SIZE:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    async def send(self, request: InkitRequest) -> int:
        started = time.perf_counter()
        shard = self._shard()
        self._active[shard] += 1
        try:
            http_request = httpx.Request(
                "POST",
                self._url(request.url),
                content=encode_body(request.body),
                headers=[*_BASE_HEADERS, *request.headers.items()],
                extensions={"timeout": self._timeout},  # a dict per request: never shared
            )
            response = await self._pool[shard].handle_async_request(http_request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            self._observe("timeout", started)
            raise InkitUnavailable("timeout", ambiguous=is_ambiguous(exc)) from exc
        except httpx.TransportError as exc:
            self._observe("connection_error", started)
            raise InkitUnavailable("connection_error", ambiguous=is_ambiguous(exc)) from exc
        except httpx.HTTPError as exc:
            # Anything else httpx raises about this exchange (a 502 whose body claims a
            # Content-Encoding it does not have raises DecodingError): transient from our
            # side, so retried within the budget.
            self._observe("http_error", started)
            raise InkitUnavailable("http_error", ambiguous=is_ambiguous(exc)) from exc
        finally:
            self._active[shard] -= 1
        status = response.status_code
        self._observe(str(status), started)
        if 200 <= status < 300:
            return status
        retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock())
        if status in (401, 403):
            raise AuthError(status)
        if status == 429:
            self._metrics.rate_limited.inc()
            raise RateLimited(retry_after)
        if status == 408 or (status >= 500 and status != 501):
            raise InkitUnavailable("server_error", status=status, retry_after=retry_after)
        raise RejectedError(status, redact_excerpt(response.text, request))

    def _observe(self, code: str, started: float) -> None:
        self._metrics.http_requests.labels(code).inc()
        self._metrics.http_request_duration.observe(time.perf_counter() - started)


def is_ambiguous(exc: httpx.HTTPError) -> bool:
    """The request may have reached Inkit although no usable answer came back."""
    return isinstance(exc, AMBIGUOUS_ERRORS)


def encode_body(body: dict[str, Any]) -> bytes:
    """Compact JSON, UTF-8: what goes on the wire."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def redact_excerpt(text: str, request: InkitRequest) -> str:
    """A short excerpt of a response body with every string the request carried (trait values,
    the API key) replaced, because APIs like to echo the offending value back."""
    excerpt = text[: EXCERPT_CHARS * 4]
    secrets = sorted(
        {s for s in _strings(request.body) if len(s) >= _MIN_REDACT_LEN}
        | {v for v in request.headers.values() if len(v) >= _MIN_REDACT_LEN},
        key=len,
        reverse=True,
    )
    for secret in secrets:
        if secret in excerpt:
            excerpt = excerpt.replace(secret, REDACTED)
    return excerpt[:EXCERPT_CHARS]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)
