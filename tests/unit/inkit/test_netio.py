"""The connector's network layer under httpx (connector/inkit/netio.py), over real loopback
sockets: what a request meets on a bad day (a server that never answers, closes an idle
keep-alive connection, answers with a body bigger than the read buffer, presents a certificate
from the wrong CA) ends as the same typed outcome httpx's default stack gives, and the
transport really runs on it unless the environment names a proxy."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from prometheus_client import CollectorRegistry

from connector.errors import InkitUnavailable, RejectedError
from connector.inkit.client import InkitClient
from connector.inkit.netio import AsyncioBackend, build_transport, environment_proxy
from connector.models import InkitRequest
from connector.observability.metrics import Metrics
from connector.testing.inkit_simulator import InkitSimulator
from connector.testing.tls_material import make_tls_files

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def request(url: str) -> InkitRequest:
    return InkitRequest(url=url, body={"template_id": "t", "api_token": "k"}, headers={})


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


def answer(status: int, body: bytes = b"{}") -> bytes:
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def serve(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> asyncio.Server:
    return await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_context)


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def client_for(url: str, *, timeout: float = 5.0, ca_bundle: str | None = None) -> InkitClient:
    transport = build_transport(url, limits=httpx.Limits(max_connections=4), ca_bundle=ca_bundle)
    return InkitClient(transport, Metrics(CollectorRegistry()), timeout=httpx.Timeout(timeout))


def test_requests_go_out_over_the_connectors_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted where the connection is opened, not read back from the attribute build_transport
    sets: an httpx that stopped using that attribute would fail here."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    opened: list[str] = []
    connect_tcp = AsyncioBackend.connect_tcp

    async def counting(self: AsyncioBackend, host: str, port: int, **kw: Any) -> Any:
        opened.append(host)
        return await connect_tcp(self, host, port, **kw)

    monkeypatch.setattr(AsyncioBackend, "connect_tcp", counting)
    with InkitSimulator(api_key="k", seed=0) as simulator:
        url = simulator.webhook_url
        assert asyncio.run(client_for(url).send(request(url))) in (200, 202)
    assert opened == ["127.0.0.1"]


def test_a_proxy_named_by_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "proxy.corp.test:3128")
    monkeypatch.setenv("NO_PROXY", "internal.test")
    assert environment_proxy("https://api.inkit.com/x") == "http://proxy.corp.test:3128"
    assert environment_proxy("https://internal.test/x") is None
    transport = build_transport("https://api.inkit.com/x", limits=httpx.Limits())
    assert isinstance(transport._pool, httpcore.AsyncHTTPProxy)  # type: ignore[attr-defined]


def test_concurrent_requests_reach_the_simulator() -> None:
    with InkitSimulator(api_key="k", seed=0) as simulator:

        async def go() -> list[int]:
            client = client_for(simulator.webhook_url)
            return await asyncio.gather(
                *(client.send(request(simulator.webhook_url)) for _ in range(40))
            )

        statuses = asyncio.run(go())
        assert simulator.stats()["accepted"] == 40
    assert set(statuses) == {200} or set(statuses) == {202}


def test_a_server_that_never_answers_is_an_ambiguous_timeout() -> None:
    async def go() -> BaseException | int:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            await asyncio.sleep(30)

        server = await serve(silent)
        url = f"http://127.0.0.1:{port_of(server)}/hook"
        try:
            return await client_for(url, timeout=0.3).send(request(url))
        except InkitUnavailable as exc:
            return exc
        finally:
            server.close()

    outcome = asyncio.run(go())
    assert isinstance(outcome, InkitUnavailable)
    assert (outcome.reason, outcome.ambiguous) == ("timeout", True)


def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    """The server answers, then closes the keep-alive connection while it sits in the pool. The
    next request must go out on a fresh connection, not fail as "server disconnected" (which
    would count as an ambiguous send)."""
    connections: list[int] = []

    async def go() -> list[int]:
        async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(1)
            await read_request(reader)
            writer.write(answer(200))
            await writer.drain()
            writer.close()

        server = await serve(once)
        url = f"http://127.0.0.1:{port_of(server)}/hook"
        client = client_for(url)
        try:
            first = await client.send(request(url))
            await asyncio.sleep(0.2)  # the close reaches us while the connection is idle
            second = await client.send(request(url))
        finally:
            server.close()
        return [first, second]

    assert asyncio.run(go()) == [200, 200]
    assert len(connections) == 2


def test_a_body_bigger_than_the_read_buffer_is_read_whole() -> None:
    body = b'{"error":"' + b"x" * (1024 * 1024) + b'"}'

    async def go() -> BaseException | int:
        async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            writer.write(answer(422, body))
            await writer.drain()

        server = await serve(big)
        url = f"http://127.0.0.1:{port_of(server)}/hook"
        try:
            return await client_for(url).send(request(url))
        except RejectedError as exc:
            return exc
        finally:
            server.close()

    outcome = asyncio.run(go())
    assert isinstance(outcome, RejectedError)
    assert outcome.status == 422


@pytest.mark.parametrize(
    ("trusted", "expected"), [("ca", 200), ("other_ca", "connection_error, ambiguous=False")]
)
def test_tls_is_verified_against_the_configured_ca(
    tmp_path: Path, trusted: str, expected: int | str
) -> None:
    files = make_tls_files(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(files.server_cert, files.server_key)

    async def go() -> int | str:
        async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await read_request(reader)
                writer.write(answer(200))
                await writer.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass  # the client refused our certificate

        server = await serve(ok, server_ctx)
        url = f"https://localhost:{port_of(server)}/hook"
        try:
            return await client_for(url, ca_bundle=str(getattr(files, trusted))).send(request(url))
        except InkitUnavailable as exc:  # not ambiguous: nothing was sent
            return f"{exc.reason}, ambiguous={exc.ambiguous}"
        finally:
            server.close()

    assert asyncio.run(go()) == expected


def test_a_cancelled_request_leaves_the_pool_usable() -> None:
    async def go() -> int:
        answered = 0

        async def slow_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal answered
            while True:
                try:
                    await read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                answered += 1
                if answered == 1:
                    await asyncio.sleep(30)
                writer.write(answer(200))
                await writer.drain()

        server = await serve(slow_first)
        url = f"http://127.0.0.1:{port_of(server)}/hook"
        client = client_for(url)
        try:
            task = asyncio.create_task(client.send(request(url)))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return await client.send(request(url))
        finally:
            server.close()

    assert asyncio.run(go()) == 200
