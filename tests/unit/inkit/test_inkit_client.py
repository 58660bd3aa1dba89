"""Every Inkit answer is classified the way Segment's destination treated it."""

import asyncio
import json

import httpx
import pytest
from prometheus_client import CollectorRegistry

from connector.errors import AuthError, InkitUnavailable, RateLimited, RejectedError
from connector.inkit.client import InkitClient, redact_excerpt
from connector.models import InkitRequest
from connector.observability.metrics import Metrics

REQUEST = InkitRequest(
    "https://inkit.test/integrations/webhook",
    {"Content-Type": "application/json"},
    {"api_token": "sekret-key", "template_id": "tmpl_1", "address_line_1": "1 Rocket Road"},
    "m-1",
)


def send(handler: httpx.MockTransport) -> tuple[int | Exception, Metrics]:
    metrics = Metrics(CollectorRegistry())

    async def go() -> int:
        return await InkitClient(handler, metrics, clock=lambda: 1_700_000_000.0).send(REQUEST)

    try:
        return asyncio.run(go()), metrics
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return exc, metrics


def answer(
    status: int, body: str = "", headers: dict[str, str] | None = None
) -> httpx.MockTransport:
    return httpx.MockTransport(lambda _r: httpx.Response(status, text=body, headers=headers))


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_success(status: int) -> None:
    result, metrics = send(answer(status))
    assert result == status
    assert metrics.http_requests.labels(str(status))._value.get() == 1


def test_the_body_is_the_mapped_json() -> None:
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(202)

    send(httpx.MockTransport(handler))
    assert seen == [REQUEST.body]


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_auth_errors(status: int) -> None:
    result, _ = send(answer(status))
    assert isinstance(result, AuthError)


def test_429_is_rate_limited_with_retry_after() -> None:
    result, metrics = send(answer(429, headers={"Retry-After": "12"}))
    assert isinstance(result, RateLimited)
    assert result.retry_after == 12.0
    assert metrics.rate_limited._value.get() == 1


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504, 599])
def test_408_and_5xx_are_transient(status: int) -> None:
    result, _ = send(answer(status))
    assert isinstance(result, InkitUnavailable)
    assert result.status == status


@pytest.mark.parametrize("status", [400, 404, 405, 409, 422, 501])
def test_other_4xx_and_501_are_rejections(status: int) -> None:
    result, _ = send(answer(status, body='{"error": "bad"}'))
    assert isinstance(result, RejectedError)
    assert result.reason == f"http_{status}"


def test_timeouts_and_connection_errors_are_transient() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    for handler, reason in ((timeout, "timeout"), (refused, "connection_error")):
        result, metrics = send(httpx.MockTransport(handler))
        assert isinstance(result, InkitUnavailable)
        assert result.reason == reason
        assert metrics.http_requests.labels(reason)._value.get() == 1


def test_rejection_excerpt_never_echoes_trait_values_or_the_key() -> None:
    body = 'address_line_1 "1 Rocket Road" is too long; token sekret-key' + "x" * 1000
    result, _ = send(answer(422, body=body))
    assert isinstance(result, RejectedError)
    assert "1 Rocket Road" not in result.excerpt
    assert "sekret-key" not in result.excerpt
    assert len(result.excerpt) <= 200
    assert "[REDACTED]" in redact_excerpt("tmpl_1 failed", REQUEST)


def test_requests_fill_the_first_shard_with_a_free_connection_before_the_next() -> None:
    """Idle connections cost a socket check per request in the shard a request goes to (see
    InkitClient): requests fill shards in order, so idle connections sit in shards nobody uses,
    and a finished request frees its slot for the next one."""
    metrics = Metrics(CollectorRegistry())
    seen: list[int] = []

    async def go() -> list[int]:
        release = asyncio.Event()

        def shard(index: int) -> httpx.AsyncBaseTransport:
            class Held(httpx.AsyncBaseTransport):
                async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                    seen.append(index)
                    await release.wait()
                    return httpx.Response(200)

            return Held()

        pools = [shard(i) for i in range(3)]
        client = InkitClient(pools, metrics, shard_size=2)
        first = [asyncio.create_task(client.send(REQUEST)) for _ in range(3)]
        while len(seen) < 3:
            await asyncio.sleep(0)
        release.set()
        await asyncio.gather(*first)
        release.clear()
        second = [asyncio.create_task(client.send(REQUEST)) for _ in range(2)]
        while len(seen) < 5:
            await asyncio.sleep(0)
        release.set()
        await asyncio.gather(*second)
        for pool in pools:
            await pool.aclose()
        return seen

    assert asyncio.run(go()) == [0, 0, 1, 0, 0]
