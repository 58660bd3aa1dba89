"""Ambiguous sends (issue #15): which failures mean "the request may have reached Inkit", and what
AMBIGUOUS_SEND_POLICY makes of them. Classification over httpx.MockTransport (each exception
httpx raises) and over real sockets (the Inkit simulator dropping a connection after reading the
request; a port nobody listens on)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable

import httpx
import pytest
from prometheus_client import CollectorRegistry

from connector.errors import AmbiguousSend, InkitUnavailable
from connector.inkit.client import InkitClient
from connector.inkit.netio import build_transport
from connector.inkit.retry import Backoff
from connector.inkit.sender import Job, Result, ResultKind, Sender
from connector.models import AmbiguousPolicy, InkitRequest, RecordRef
from connector.observability.metrics import Metrics
from connector.testing.inkit_simulator import Faults, InkitSimulator
from tests.unit.delivery.test_processor import wait_for

URL = "https://inkit.test/hook"

# (exception, ambiguous): from httpx's exception tree (httpx/_exceptions.py docstring).
CASES: list[tuple[Callable[[httpx.Request], Exception], bool]] = [
    (lambda r: httpx.ReadTimeout("read timed out", request=r), True),
    (lambda r: httpx.WriteTimeout("write timed out", request=r), True),
    (lambda r: httpx.ReadError("connection reset", request=r), True),
    (lambda r: httpx.WriteError("broken pipe", request=r), True),
    (lambda r: httpx.CloseError("close failed", request=r), True),
    (lambda r: httpx.RemoteProtocolError("Server disconnected", request=r), True),
    (lambda r: httpx.DecodingError("bad gzip", request=r), True),
    (lambda r: httpx.ConnectError("connection refused", request=r), False),
    (lambda r: httpx.ConnectTimeout("connect timed out", request=r), False),
    (lambda r: httpx.PoolTimeout("no free connection", request=r), False),
    (lambda r: httpx.LocalProtocolError("bad header", request=r), False),
    (lambda r: httpx.UnsupportedProtocol("ftp", request=r), False),
]


def request() -> InkitRequest:
    return InkitRequest(url=URL, body={"template_id": "t"}, headers={}, message_id="m-1")


def send_once(transport: httpx.AsyncBaseTransport, url: str = URL) -> BaseException | int:
    async def go() -> BaseException | int:
        async with transport:
            client = InkitClient(
                transport, Metrics(CollectorRegistry()), timeout=httpx.Timeout(2.0)
            )
            req = InkitRequest(url=url, body={"template_id": "t"}, headers={}, message_id="m")
            try:
                return await client.send(req)
            except InkitUnavailable as exc:
                return exc

    return asyncio.run(go())


@pytest.mark.parametrize(("make", "ambiguous"), CASES)
def test_each_httpx_failure_is_classified(
    make: Callable[[httpx.Request], Exception], ambiguous: bool
) -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        raise make(r)

    outcome = send_once(httpx.MockTransport(handler))
    assert isinstance(outcome, InkitUnavailable)
    assert outcome.ambiguous is ambiguous


# The connector's own transport (httpcore on connector.inkit.netio) and httpx's default one
# (httpcore on anyio): the same failure must be classified the same way on both.
TRANSPORTS: dict[str, Callable[[str], httpx.AsyncBaseTransport]] = {
    "connector": lambda url: build_transport(url, limits=httpx.Limits()),
    "httpx-default": lambda url: httpx.AsyncHTTPTransport(),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_connection_dropped_after_the_request_was_read_is_ambiguous(transport: str) -> None:
    # The simulator reads the whole request, then closes the connection without an answer.
    with InkitSimulator(api_key="k", faults=Faults(rate_drop=1.0), seed=0) as simulator:
        url = simulator.webhook_url
        outcome = send_once(TRANSPORTS[transport](url), url)
        assert simulator.stats()["dropped"] == 1
    assert isinstance(outcome, InkitUnavailable)
    assert outcome.ambiguous is True


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_refused_connection_is_not_ambiguous(transport: str) -> None:
    with socket.socket() as s:  # a free port, closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook"
    outcome = send_once(TRANSPORTS[transport](url), url)
    assert isinstance(outcome, InkitUnavailable)
    assert outcome.reason == "connection_error"
    assert outcome.ambiguous is False


def run_job(
    handler: Callable[[httpx.Request], httpx.Response], policy: AmbiguousPolicy
) -> tuple[Result, Metrics]:
    metrics = Metrics(CollectorRegistry())
    sender = Sender(
        lambda: InkitClient(httpx.MockTransport(handler), metrics),
        metrics,
        retry_max_s=30.0,
        backoff=Backoff(base_s=0.01, max_s=0.02),
        ambiguous_policy=policy,
    )
    job = Job(RecordRef("t", 0, 0), ("t", 0, "u"), request(), None, None, 0)
    sender.start()
    try:
        sender.submit([job])
        results: list[Result] = []
        wait_for(lambda: bool(results.extend(sender.drain_results()) or results))
    finally:
        sender.stop()
    return results[0], metrics


def flaky(first: Callable[[httpx.Request], Exception]) -> Callable[[httpx.Request], httpx.Response]:
    calls: list[int] = []

    def handler(r: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise first(r)
        return httpx.Response(202, json={"ok": json.loads(r.content)["template_id"]})

    return handler


def test_resend_retries_an_ambiguous_failure_and_counts_it() -> None:
    result, metrics = run_job(
        flaky(lambda r: httpx.ReadTimeout("t", request=r)), AmbiguousPolicy.RESEND
    )
    assert result.kind is ResultKind.DELIVERED
    assert result.job.attempts == 2
    assert metrics.ambiguous_sends.labels("resend", "retried")._value.get() == 1


def test_dead_letter_policy_never_retries_an_ambiguous_failure() -> None:
    result, metrics = run_job(
        flaky(lambda r: httpx.RemoteProtocolError("gone", request=r)), AmbiguousPolicy.DEAD_LETTER
    )
    assert result.kind is ResultKind.FAILED
    assert isinstance(result.error, AmbiguousSend)
    assert result.error.reason == "ambiguous_send"
    assert result.job.attempts == 1
    assert result.job.unanswered  # its intent must stay open
    assert metrics.ambiguous_sends.labels("dead-letter", "dead_lettered")._value.get() == 1


def test_dead_letter_policy_still_retries_when_nothing_was_sent() -> None:
    result, metrics = run_job(
        flaky(lambda r: httpx.ConnectError("refused", request=r)), AmbiguousPolicy.DEAD_LETTER
    )
    assert result.kind is ResultKind.DELIVERED
    assert result.job.attempts == 2
    assert not result.job.unanswered
    assert metrics.ambiguous_sends.labels("dead-letter", "dead_lettered")._value.get() == 0


def test_the_sender_run_and_redrive_build_keeps_the_policy() -> None:
    # `run` and `redrive` build their sender with cli.run.build_sender; a redrive under
    # dead-letter once built its own and resent what may already have reached Inkit.
    from connector.cli.run import build_sender
    from connector.settings import Settings

    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
        "KAFKA_TOPIC": "identify",
        "KAFKA_VALUE_FORMAT": "json",
        "INKIT_API_KEY": "k",
        "AMBIGUOUS_SEND_POLICY": "dead-letter",
    }
    metrics = Metrics(CollectorRegistry())
    with InkitSimulator(api_key="k", faults=Faults(rate_drop=1.0), seed=0) as simulator:
        sender = build_sender(Settings.from_env(env), metrics, None, dry_run=False)
        req = InkitRequest(
            url=simulator.webhook_url, body={"template_id": "t"}, headers={}, message_id="m"
        )
        sender.start()
        try:
            sender.submit([Job(RecordRef("t", 0, 0), ("t", 0, "u"), req, None, None, 0)])
            results: list[Result] = []
            wait_for(lambda: bool(results.extend(sender.drain_results()) or results))
        finally:
            sender.stop()
        assert simulator.stats()["dropped"] == 1  # sent once, never again
    assert results[0].kind is ResultKind.FAILED
    assert isinstance(results[0].error, AmbiguousSend)
