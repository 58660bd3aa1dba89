"""A local, fault-injecting stand-in for Inkit's HTTP API (legacy webhook and /v1/render)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import email.utils
import json
import logging
import random
import re
import signal
import string
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import parse_qs, urlsplit

import httpx

logger = logging.getLogger(__name__)

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

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["statuses_5xx"] = list(self.statuses_5xx)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        """Build from JSON; raises ValueError/TypeError on unknown keys or bad values."""
        data = dict(data)
        if "statuses_5xx" in data:
            data["statuses_5xx"] = tuple(data["statuses_5xx"])
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


class _SimCore:
    """All simulator state and the request logic, free of I/O. Methods are thread-safe: the server
    calls them from its loop thread while tests call them from theirs."""

    def __init__(
        self, api_key: str, faults: Faults, seed: int | None, max_records: int | None
    ) -> None:
        self._lock = threading.Lock()
        self.api_key = api_key
        self.faults = faults
        self._rng = random.Random(seed)
        # Ids come from their own stream so that fault draws don't depend on how many renders ran.
        self._id_rng = random.Random(None if seed is None else f"{seed}/render-ids")
        self._max_records = max_records
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._records: list[RecordedRequest] = []
            self._first_seq = 1
            self._next_seq = 1
            self._by_status: dict[int, int] = {}
            self._total = self._dropped = self._hung = 0

    def plan(self, req: _Request) -> _Plan:
        if req.error is not None or req.target.startswith(CONTROL_PREFIX):
            return _NO_PLAN  # control calls are never delayed, faulted or counted
        f = self.faults
        delay_ms = f.latency_ms
        if f.latency_max_ms is not None:
            delay_ms = self._rng.uniform(f.latency_ms, f.latency_max_ms)
        u = self._rng.random()
        fault: _Fault = "none"
        rates: tuple[tuple[_Fault, float], ...] = (
            ("drop", f.rate_drop),
            ("hang", f.rate_hang),
            ("429", f.rate_429),
            ("5xx", f.rate_5xx),
        )
        for name, rate in rates:
            if u < rate:
                fault = name
                break
            u -= rate
        status_5xx = self._rng.choice(f.statuses_5xx) if fault == "5xx" else 500
        return _Plan(delay_ms / 1000.0, fault, status_5xx)

    def count_silent(self, fault: _Fault) -> None:
        with self._lock:
            self._total += 1
            if fault == "drop":
                self._dropped += 1
            else:
                self._hung += 1

    def respond(self, req: _Request, plan: _Plan) -> tuple[int, bytes, str]:
        """Status, JSON body and extra header lines for one request whose delay has elapsed."""
        path = req.target.split("?", 1)[0]
        if req.error is None and path.startswith(CONTROL_PREFIX):
            return self._control(req, path)
        extra = ""
        faults = self.faults  # one snapshot: another thread may swap it
        if req.error is not None:
            status, body = _error(req.error.status, str(req.error))
        elif faults.outage_active(time.time()):
            status, body = _error(faults.outage_status or 503, "simulated outage")
        elif plan.fault == "429":
            status, body = _error(429, "rate limit exceeded")
            extra = f"Retry-After: {faults.retry_after_s:g}\r\n"
        elif plan.fault == "5xx":
            status, body = _error(plan.status_5xx, "simulated server error")
        else:
            status, body = self._inkit(req, path)
        with self._lock:
            self._total += 1
            self._by_status[status] = self._by_status.get(status, 0) + 1
        return status, body, extra

    def _inkit(self, req: _Request, path: str) -> tuple[int, bytes]:
        if path not in (WEBHOOK_PATH, RENDER_PATH):
            return _error(404, "not found")
        if req.method != "POST":
            return _error(405, "method not allowed")
        if (
            path == RENDER_PATH
            and req.headers.get(API_KEY_HEADER, b"").decode("latin-1") != self.api_key
        ):
            return _error(401, "API key not authorized")
        try:
            payload = json.loads(req.body)
        except ValueError:
            return _error(400, "body is not valid JSON")
        if not isinstance(payload, dict):
            return _error(400, "body must be a JSON object")
        if path == WEBHOOK_PATH and payload.pop("api_token", None) != self.api_key:
            return _error(401, "API key not authorized")
        template_id = payload.get("template_id")
        if not isinstance(template_id, str) or not template_id:
            return _error(400, "template_id: required non-empty string")
        fields: Any = payload
        if path == RENDER_PATH:
            fields = payload.get("merge_parameters")
            if not isinstance(fields, dict):
                return _error(400, "merge_parameters: required object")
            if not isinstance(payload.get("destinations", {}), dict):
                return _error(400, "destinations: must be an object")
        problem = validate_fields(fields)
        if problem is not None:
            return _error(422, problem)
        render_id = None
        if path == RENDER_PATH:
            render_id = "rend_" + "".join(self._id_rng.choices(_BASE62, k=22))
        with self._lock:
            self._records.append(
                RecordedRequest(self._next_seq, req.arrival, path, payload, render_id)
            )
            self._next_seq += 1
            if self._max_records is not None and len(self._records) > self._max_records * 2:
                # Trim in bulk so that appends stay O(1) amortised; the tail is what tests page.
                cut = len(self._records) - self._max_records
                del self._records[:cut]
                self._first_seq += cut
        if render_id is not None:
            return 200, _json_bytes({"id": render_id, "template_id": template_id})
        return 202, b'{"status":"accepted"}'

    def requests(self, since: int = 0, limit: int | None = None) -> list[RecordedRequest]:
        with self._lock:
            start = max(0, since + 1 - self._first_seq)
            end = None if limit is None else start + limit
            return self._records[start:end]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self._total,
                "accepted": sum(n for s, n in self._by_status.items() if 200 <= s < 300),
                "by_status": dict(sorted(self._by_status.items())),
                "dropped": self._dropped,
                "hung": self._hung,
                "recorded": self._next_seq - 1,
            }

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults

    def set_outage(self, status: int | None, seconds: float | None) -> None:
        until = None if seconds is None else time.time() + seconds
        with self._lock:  # read-modify-write: don't lose a concurrent set_faults
            self.faults = dataclasses.replace(self.faults, outage_status=status, outage_until=until)

    def _control(self, req: _Request, path: str) -> tuple[int, bytes, str]:
        try:
            status, obj = self._control_obj(req, path)
        except (ValueError, TypeError, KeyError) as exc:
            status, obj = 400, {"error": str(exc), "code": 400}
        return status, _json_bytes(obj), ""

    def _control_obj(self, req: _Request, path: str) -> tuple[int, Any]:
        route = (req.method, path[len(CONTROL_PREFIX) :])
        body: Any = json.loads(req.body) if req.body else {}
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        if route == ("GET", "requests"):
            query = parse_qs(urlsplit(req.target).query)
            since = int(query.get("since", ["0"])[0])
            limit = int(query["limit"][0]) if "limit" in query else None
            return 200, [dataclasses.asdict(r) for r in self.requests(since, limit)]
        if route == ("GET", "stats"):
            stats = self.stats()
            stats["by_status"] = {str(k): v for k, v in stats["by_status"].items()}
            return 200, stats
        if route == ("POST", "reset"):
            self.reset()
            return 200, {"status": "reset"}
        if route == ("GET", "faults"):
            return 200, self.faults.to_dict()
        if route == ("POST", "faults"):
            self.set_faults(Faults.from_dict(body))
            return 200, self.faults.to_dict()
        if route == ("POST", "outage"):
            self.set_outage(body.get("status"), body.get("seconds"))
            return 200, self.faults.to_dict()
        if route == ("POST", "api-key"):
            key = body["api_key"]
            if not isinstance(key, str) or not key:
                raise ValueError("api_key must be a non-empty string")
            self.api_key = key
            return 200, {"status": "ok"}
        return 404, {"error": "unknown control endpoint", "code": 404}


class _DateCache:
    """HTTP Date header, formatted at most once a second (formatting it per request is costly)."""

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = f"Date: {email.utils.formatdate(now, usegmt=True)}\r\n".encode()
        return self._line


_DATE = _DateCache()


class _Connection(asyncio.Protocol):
    """One client connection. Requests are answered strictly in arrival order (pipelining-safe):
    the common case (no latency, no hang) is answered inline from data_received, and anything that
    must wait goes through one task per connection that drains the queue in order."""

    def __init__(self, core: _SimCore, connections: set[_Connection]) -> None:
        self._core = core
        self._connections = connections
        self._buf = bytearray()
        self._queue: deque[tuple[_Request, _Plan | None]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._stop_reading = False  # after a Connection: close request or a parse error
        self._gone = False
        self._continued = False  # 100 Continue already sent for the request being read
        self._transport: asyncio.Transport  # set by connection_made, before any other callback

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone = True
        self._connections.discard(self)
        if self._task is not None:
            self._task.cancel()  # e.g. a client that timed out on a hang: stop holding it

    # If a client stops reading its responses, stop reading its requests instead of buffering.
    def pause_writing(self) -> None:
        self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._transport.resume_reading()

    def abort(self) -> asyncio.Task[None] | None:
        """Cut the connection now; return its in-flight task, cancelled, for the caller to await."""
        self._gone = True
        self._transport.abort()
        task = self._task
        if task is not None:
            task.cancel()
        return task

    def data_received(self, data: bytes) -> None:
        if self._stop_reading:
            return
        self._buf += data
        while not self._stop_reading:
            try:
                req = self._parse()
            except _BadRequestError as exc:
                # The stream is out of sync: answer the error after what came before, then close.
                req = _Request("", "", {}, b"", False, time.time(), exc)
            if req is None:
                break
            self._queue.append((req, None))
            self._stop_reading = not req.keep_alive
        if self._queue and self._task is None:
            self._run_inline()

    def _run_inline(self) -> None:
        while self._queue and not self._gone:
            req, plan = self._queue[0]
            if plan is None:
                plan = self._core.plan(req)
            if plan.delay_s > 0 or plan.fault in ("drop", "hang"):
                self._queue[0] = (req, plan)
                self._task = asyncio.get_running_loop().create_task(self._drain())
                return
            self._queue.popleft()
            self._answer(req, plan)

    async def _drain(self) -> None:
        try:
            while self._queue and not self._gone:
                req, plan = self._queue.popleft()
                if plan is None:
                    plan = self._core.plan(req)
                if plan.fault in ("drop", "hang"):
                    self._core.count_silent(plan.fault)
                    if plan.fault == "hang":
                        await asyncio.sleep(self._core.faults.hang_s)
                    self._close()
                    return
                if plan.delay_s > 0:
                    await asyncio.sleep(plan.delay_s)
                self._answer(req, plan)
        finally:
            self._task = None

    def _close(self) -> None:
        # close(), not abort(): earlier pipelined responses still in the buffer get flushed.
        self._gone = True
        self._queue.clear()
        self._transport.close()

    def _answer(self, req: _Request, plan: _Plan) -> None:
        status, body, extra = self._core.respond(req, plan)
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}"
            + ("" if req.keep_alive else "Connection: close\r\n")
        ).encode()
        self._transport.write(head + _DATE.line() + b"Server: inkit-simulator\r\n\r\n" + body)
        if not req.keep_alive:
            self._close()

    def _parse(self) -> _Request | None:
        """Take one complete request off the buffer, or None if more bytes are needed."""
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD_BYTES:
                raise _BadRequestError(431, "request head too large")
            return None
        lines = bytes(self._buf[:end]).split(b"\r\n")
        try:
            method, target, version = lines[0].decode("ascii").split(" ")
        except (UnicodeDecodeError, ValueError):
            raise _BadRequestError(400, "malformed request line") from None
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise _BadRequestError(400, "unsupported HTTP version")
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise _BadRequestError(400, "malformed header line")
            headers[name.lower()] = value.strip()
        if b"transfer-encoding" in headers:
            raise _BadRequestError(501, "chunked request bodies are not supported")
        try:
            length = int(headers.get(b"content-length", b"0"))
        except ValueError:
            raise _BadRequestError(400, "bad Content-Length") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise _BadRequestError(413, "body too large")
        if len(self._buf) < end + 4 + length:
            # curl sends Expect: 100-continue for larger bodies and would wait a second for it.
            # Only on an idle connection: an interim response must not overtake a pending one.
            idle = not self._queue and self._task is None
            expect = headers.get(b"expect", b"").lower()
            if idle and not self._continued and expect == b"100-continue":
                self._continued = True
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        self._continued = False
        body = bytes(self._buf[end + 4 : end + 4 + length])
        del self._buf[: end + 4 + length]
        conn = headers.get(b"connection", b"").lower()
        keep_alive = conn != b"close" if version == "HTTP/1.1" else conn == b"keep-alive"
        return _Request(method, target, headers, body, keep_alive, time.time())


class _Server:
    """The listening socket and its connections, owned by one event loop."""

    def __init__(self, core: _SimCore) -> None:
        self.core = core
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def open(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        # A deep backlog so that a burst of 1,000+ connects is not refused.
        self._server = await loop.create_server(
            lambda: _Connection(self.core, self.connections), host, port, backlog=4096
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for conn in list(self.connections) if (t := conn.abort()) is not None]
        # Wait for the cancelled sleeps to unwind, so no task is pending when the loop closes.
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        await asyncio.sleep(0)  # let the aborts' connection_lost callbacks run


class InkitSimulator:
    """A real HTTP/1.1 Inkit stand-in on loopback.

    `start()` runs it on its own event loop in a daemon thread and returns once it listens;
    `stop()` closes every connection (hanging ones included) and joins the thread. All other
    methods are thread-safe and take effect for the next request.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str = "test-api-key",
        faults: Faults | None = None,
        seed: int | None = None,
        max_records: int | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._core = _SimCore(api_key, faults or Faults(), seed, max_records)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server = _Server(self._core)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._port = loop.run_until_complete(self._server.open(self._host, self._port))
            except OSError as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._server.close())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="inkit-simulator", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = self._loop = None
            raise failure[0]

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = self._loop = None

    def __enter__(self) -> InkitSimulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def webhook_url(self) -> str:
        return self.base_url + WEBHOOK_PATH

    @property
    def render_url(self) -> str:
        return self.base_url + RENDER_PATH

    @property
    def api_key(self) -> str:
        return self._core.api_key

    @property
    def faults(self) -> Faults:
        return self._core.faults

    def set_faults(self, faults: Faults) -> None:
        self._core.set_faults(faults)

    def outage(self, status: int, seconds: float | None = None) -> None:
        """Answer every Inkit request with `status` (503, or 401 for a revoked key) for `seconds`,
        or until `clear_outage()` when seconds is None."""
        self._core.set_outage(status, seconds)

    def clear_outage(self) -> None:
        self._core.set_outage(None, None)

    def set_api_key(self, key: str) -> None:
        self._core.api_key = key

    def requests(self, since: int = 0) -> list[RecordedRequest]:
        return self._core.requests(since)

    def reset(self) -> None:
        self._core.reset()

    def stats(self) -> dict[str, Any]:
        """{"total", "accepted", "by_status" (int keys), "dropped", "hung", "recorded"}."""
        return self._core.stats()


class SimulatorClient:
    """Drives a simulator running elsewhere (another process) through its `/_sim/` HTTP API.

    Methods mirror `InkitSimulator`'s; they block and raise `httpx.HTTPError` on failure.
    """

    def __init__(self, base_url: str, *, timeout_s: float = 5.0) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/") + CONTROL_PREFIX, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SimulatorClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Block until the simulator answers, e.g. right after spawning its process."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.stats()
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def requests(self, since: int = 0, limit: int | None = None) -> list[RecordedRequest]:
        params: dict[str, int] = {"since": since}
        if limit is not None:
            params["limit"] = limit
        return [RecordedRequest.from_dict(r) for r in self._call("GET", "requests", params=params)]

    def reset(self) -> None:
        self._call("POST", "reset")

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._call("GET", "stats")
        stats["by_status"] = {int(k): v for k, v in stats["by_status"].items()}
        return stats

    def faults(self) -> Faults:
        return Faults.from_dict(self._call("GET", "faults"))

    def set_faults(self, faults: Faults) -> None:
        self._call("POST", "faults", json=faults.to_dict())

    def outage(self, status: int, seconds: float | None = None) -> None:
        self._call("POST", "outage", json={"status": status, "seconds": seconds})

    def clear_outage(self) -> None:
        self._call("POST", "outage", json={"status": None, "seconds": None})

    def set_api_key(self, key: str) -> None:
        self._call("POST", "api-key", json={"api_key": key})


async def _serve_forever(host: str, port: int, core: _SimCore) -> None:
    server = _Server(core)
    bound = await server.open(host, port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    logger.info("inkit simulator listening on http://%s:%d", host, bound)
    await stopping.wait()
    await server.close()
    logger.info("inkit simulator stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--api-key", default="test-api-key")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--latency-max-ms", type=float, default=None)
    parser.add_argument("--rate-429", type=float, default=0.0)
    parser.add_argument("--retry-after-s", type=float, default=1.0)
    parser.add_argument("--rate-5xx", type=float, default=0.0)
    parser.add_argument("--rate-hang", type=float, default=0.0)
    parser.add_argument("--hang-s", type=float, default=30.0)
    parser.add_argument("--rate-drop", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--max-records", type=int, default=None, help="keep only the newest N")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    faults = Faults(
        latency_ms=args.latency_ms,
        latency_max_ms=args.latency_max_ms,
        rate_429=args.rate_429,
        retry_after_s=args.retry_after_s,
        rate_5xx=args.rate_5xx,
        rate_hang=args.rate_hang,
        hang_s=args.hang_s,
        rate_drop=args.rate_drop,
    )
    core = _SimCore(args.api_key, faults, args.seed, args.max_records)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.host, args.port, core))


if __name__ == "__main__":
    main()
