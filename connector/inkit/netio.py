"""The network under httpx: an httpcore network backend on asyncio's own transports.

httpx talks to sockets through httpcore, and httpcore, on asyncio, through anyio. Per request
that costs a cancel scope for every read and write (``anyio.fail_after``) and, for every idle
connection the pool looks at, a ``getpeername()`` and a ``poll()`` system call (httpcore's
``has_expired`` asks the stream whether its socket is readable; anyio builds its socket
attributes each time). This backend does the same job with an ``asyncio.Protocol``: reads wait
on one future with one timer, and "readable" is a flag the protocol already holds, because the
event loop reads every socket as soon as data arrives.

httpx and httpcore stay the HTTP client (requests, responses, HTTP/1.1, pooling, keep-alive,
errors); only the bytes-on-a-socket layer is ours. It implements httpcore's public
``AsyncNetworkBackend`` interface (httpcore docs, "Network backends"), raising httpcore's own
exceptions, which httpx maps to its own exactly as for anyio.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import httpcore
import httpx

# The most a connection buffers from the server before it stops reading the socket: Inkit's
# answers are a few hundred bytes; a bigger one is read in steps, as httpcore asks.
_READ_HIGH_WATER = 256 * 1024


class _Protocol(asyncio.Protocol):
    """Bytes received and the connection's state, for one ``AsyncioStream``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.lost = False
        self.error: BaseException | None = None
        self.reading_paused = False
        self._read_waiter: asyncio.Future[bool] | None = None
        self._drain_waiter: asyncio.Future[bool] | None = None
        self.writing_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _READ_HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # the transport closes itself; what was received stays readable

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        self._wake_reader()
        self._wake_drainer()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_drainer()

    def wait_readable(self) -> asyncio.Future[bool]:
        self._read_waiter = self._loop.create_future()
        return self._read_waiter

    def wait_drained(self) -> asyncio.Future[bool]:
        self._drain_waiter = self._loop.create_future()
        return self._drain_waiter

    def _wake_reader(self) -> None:
        waiter, self._read_waiter = self._read_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def _wake_drainer(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(True)


async def _wait(
    loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[bool], timeout: float | None
) -> bool:
    """Wait for ``waiter``; False when ``timeout`` seconds passed first. One timer, no task
    (``asyncio.timeout`` would add a context object and a reschedulable handle per call)."""
    if timeout is None:
        return await waiter
    timer = loop.call_later(timeout, _expire, waiter)
    try:
        return await waiter
    finally:
        timer.cancel()


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection, plain or TLS, as httpcore reads and writes it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.Transport,
        protocol: _Protocol,
    ) -> None:
        self._loop = loop
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        idle = not protocol.buffer and not protocol.eof and not protocol.lost
        if idle and not await _wait(self._loop, protocol.wait_readable(), timeout):
            raise httpcore.ReadTimeout("timed out waiting for the server's answer")
        if protocol.buffer:
            data = bytes(protocol.buffer[:max_bytes])
            del protocol.buffer[:max_bytes]
            if protocol.reading_paused and len(protocol.buffer) <= _READ_HIGH_WATER // 2:
                protocol.reading_paused = False
                self._transport.resume_reading()
            return data
        if protocol.error is not None:
            raise httpcore.ReadError(str(protocol.error) or type(protocol.error).__name__)
        return b""  # the server closed the connection: httpcore decides what that means

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if protocol.lost or self._transport.is_closing():
            raise httpcore.WriteError(_lost_reason(protocol))
        self._transport.write(buffer)
        if protocol.writing_paused:
            if not await _wait(self._loop, protocol.wait_drained(), timeout):
                raise httpcore.WriteTimeout("timed out sending the request")
            if protocol.lost:
                raise httpcore.WriteError(_lost_reason(protocol))

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            tls = await asyncio.wait_for(
                self._loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                ),
                timeout,
            )
        except TimeoutError as exc:
            self._transport.close()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from exc
        except (OSError, ssl.SSLError, EOFError) as exc:  # ssl.SSLError is an OSError
            self._transport.close()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        if not isinstance(tls, asyncio.Transport):  # None: closed during the handshake
            raise httpcore.ConnectError("connection closed during the TLS handshake")
        self._protocol.transport = tls
        return AsyncioStream(self._loop, tls, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # An idle HTTP/1.1 connection has nothing to read: bytes or an end of stream mean
            # the server closed it (or broke the protocol), so httpcore must not reuse it. The
            # loop has already read whatever the socket had.
            protocol = self._protocol
            return bool(protocol.buffer) or protocol.eof or protocol.lost
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Opens ``AsyncioStream`` connections on the running event loop."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local_addr = (local_address, 0) if local_address else None
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _Protocol(loop), host, port, local_addr=local_addr),
                timeout,
            )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}:{port}") from exc
        except OSError as exc:  # refused, unreachable, DNS (socket.gaierror)
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        _set_options(transport, socket_options)
        return AsyncioStream(loop, transport, protocol)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_unix_connection(lambda: _Protocol(loop), path), timeout
            )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"timed out connecting to {path}") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        _set_options(transport, socket_options)
        return AsyncioStream(loop, transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _set_options(
    transport: asyncio.Transport,
    socket_options: Iterable[Any] | None,
) -> None:
    sock: socket.socket | None = transport.get_extra_info("socket")
    for option in socket_options or ():
        if sock is not None:
            sock.setsockopt(*option)


def _lost_reason(protocol: _Protocol) -> str:
    if protocol.error is not None:
        return str(protocol.error) or type(protocol.error).__name__
    return "the connection is closed"


def build_transport(
    url: str, *, limits: httpx.Limits, ca_bundle: str | None = None
) -> httpx.AsyncBaseTransport:
    """An httpx transport for requests to ``url``: httpx's own, with its connection pool on
    ``AsyncioBackend``. When the environment names a proxy for ``url`` (HTTPS_PROXY and
    friends, which an ``httpx.AsyncClient`` honours), httpx's transport through that proxy,
    unchanged, so a deployment behind an egress proxy keeps working.

    TLS is always verified: against ``ca_bundle`` (a PEM file or a directory of them) when
    given, else as httpx does (certifi's roots, or SSL_CERT_FILE / SSL_CERT_DIR)."""
    if ca_bundle is None:
        ssl_context = httpx.create_ssl_context()
    elif Path(ca_bundle).is_dir():
        ssl_context = ssl.create_default_context(capath=ca_bundle)
    else:
        ssl_context = ssl.create_default_context(cafile=ca_bundle)
    proxy = environment_proxy(url)
    if proxy is not None:
        return httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits, proxy=proxy)
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits)
    # httpx builds its pool with httpcore's default backend and has no argument for another;
    # the pool it would build, with ours (httpx/_transports/default.py, 0.27-0.29). Checked
    # by tests/unit/inkit/test_netio.py, so an httpx that moves this fails there, not in use.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=AsyncioBackend(),
    )
    return transport


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url``, as httpx reads it (``*_PROXY``,
    ``ALL_PROXY`` and ``NO_PROXY``, upper or lower case), or None."""
    parsed = httpx.URL(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parsed.scheme) or proxies.get("all")
    if not proxy or _bypass(parsed.host, proxies):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


# In the standard library since Python 2 but missing from typeshed's stubs.
_bypass: Callable[[str, dict[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
