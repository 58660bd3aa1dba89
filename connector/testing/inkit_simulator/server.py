"""The asyncio HTTP/1.1 server around the core, and InkitSimulator: a simulator on its own
thread."""

from __future__ import annotations

import asyncio
import email.utils
import threading
import time
from collections import deque
from typing import Any, cast

from connector.testing.inkit_simulator.core import _SimCore
from connector.testing.inkit_simulator.protocol import (
    _REASONS,
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    RENDER_PATH,
    WEBHOOK_PATH,
    Faults,
    RecordedRequest,
    _BadRequestError,
    _Plan,
    _Request,
)


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
                    self._core.count_silent(plan.fault, req.body)
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

    def unanswered(self) -> list[tuple[str, bytes]]:
        """Requests read and never answered (drop, hang), in order: (fault, raw body). They may
        have been a letter in the post: what an ambiguous send looks like from Inkit's side."""
        return self._core.unanswered()

    def stats(self) -> dict[str, Any]:
        """{"total", "accepted", "by_status" (int keys), "dropped", "hung", "recorded"}."""
        return self._core.stats()
