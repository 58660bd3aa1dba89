"""The Inkit simulator, exercised over real loopback sockets with httpx."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connector.testing.inkit_simulator import (
    Faults,
    InkitSimulator,
    RecordedRequest,
    SimulatorClient,
)
from tests.fixtures.simulator import SIMULATOR_API_KEY as KEY

pytestmark = pytest.mark.integration

RENDER_ID = re.compile(r"rend_[0-9A-Za-z]{22}")


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as client:
        yield client


def webhook(
    http: httpx.Client, sim: InkitSimulator, key: str | None = KEY, **fields: Any
) -> httpx.Response:
    body: dict[str, Any] = {"template_id": "tmpl_1", **fields}
    if key is not None:
        body["api_token"] = key
    return http.post(sim.webhook_url, json=body)


def render(
    http: httpx.Client, sim: InkitSimulator, key: str | None = KEY, **body: Any
) -> httpx.Response:
    headers = {} if key is None else {"X-Inkit-API-Token": key}
    payload = {"template_id": "tmpl_1", "merge_parameters": {}, **body}
    return http.post(sim.render_url, json=payload, headers=headers)


# --- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "status"), [(KEY, 202), ("wrong", 401), (None, 401)])
def test_webhook_auth(
    inkit_simulator: InkitSimulator, http: httpx.Client, key: str | None, status: int
) -> None:
    response = webhook(http, inkit_simulator, key)
    assert response.status_code == status
    if status == 202:
        assert response.json() == {"status": "accepted"}
    else:
        assert response.json()["code"] == 401


@pytest.mark.parametrize(("key", "status"), [(KEY, 200), ("wrong", 401), (None, 401)])
def test_render_auth(
    inkit_simulator: InkitSimulator, http: httpx.Client, key: str | None, status: int
) -> None:
    assert render(http, inkit_simulator, key).status_code == status


def test_api_token_in_body_does_not_authorize_render(
    inkit_simulator: InkitSimulator, http: httpx.Client
) -> None:
    assert render(http, inkit_simulator, None, api_token=KEY).status_code == 401


# --- validation --------------------------------------------------------------------------------

NAME = {"first_name": "Ada"}
ADDRESS = {
    "first_name": "Ada",
    "address_line_1": "1 Main St",
    "address_city": "Springfield",
    "address_state": "IL",
    "address_zip": "62701",
    "address_country": "US",
}


@pytest.mark.parametrize(
    ("fields", "status", "error"),
    [
        ({}, 202, None),  # Segment's bare minimum: template_id only
        (ADDRESS, 202, None),
        ({**ADDRESS, "address_line_1": "x" * 64}, 202, None),
        ({**ADDRESS, "address_line_1": "x" * 65}, 422, "address_line_1: "),
        ({**ADDRESS, "address_state": "ILL"}, 422, "address_state: "),
        ({**ADDRESS, "address_state": "I1"}, 422, "address_state: "),
        ({**ADDRESS, "address_country": "us"}, 422, "address_country: "),
        ({**ADDRESS, "address_country": "USA"}, 422, "address_country: "),
        ({"address_city": "Springfield"}, 422, "first_name: "),
        ({"address_zip": "62701", "last_name": "Lovelace"}, 202, None),
        ({"custom_field": {"nested": True}, **NAME}, 202, None),
        ({"template_id": ""}, 400, "template_id: "),
        ({"template_id": 7}, 400, "template_id: "),
    ],
)
def test_webhook_validation(
    inkit_simulator: InkitSimulator,
    http: httpx.Client,
    fields: dict[str, Any],
    status: int,
    error: str | None,
) -> None:
    response = webhook(http, inkit_simulator, **fields)
    assert response.status_code == status
    if error is not None:
        assert response.json()["error"].startswith(error)
        assert response.json()["code"] == status


def test_webhook_without_template_id_is_400(
    inkit_simulator: InkitSimulator, http: httpx.Client
) -> None:
    response = http.post(inkit_simulator.webhook_url, json={"api_token": KEY})
    assert response.status_code == 400
    assert response.json() == {"error": "template_id: required non-empty string", "code": 400}


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"", b'"text"'])
def test_body_that_is_not_a_json_object_is_400(
    inkit_simulator: InkitSimulator, http: httpx.Client, content: bytes
) -> None:
    for url, headers in (
        (inkit_simulator.webhook_url, {}),
        (inkit_simulator.render_url, {"X-Inkit-API-Token": KEY}),
    ):
        response = http.post(url, content=content, headers=headers)
        assert response.status_code == 400
        assert response.json()["code"] == 400


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"merge_parameters": {"address_state": "Illinois", **NAME}}, 422, "address_state: "),
        ({"merge_parameters": {"address_city": "X"}}, 422, "first_name: "),
        ({"merge_parameters": None}, 400, "merge_parameters: "),
        ({"destinations": []}, 400, "destinations: "),
        ({"destinations": {"inkit_storage": {"name": "doc"}}}, 200, None),
    ],
)
def test_render_validation(
    inkit_simulator: InkitSimulator,
    http: httpx.Client,
    body: dict[str, Any],
    status: int,
    error: str | None,
) -> None:
    response = render(http, inkit_simulator, **body)
    assert response.status_code == status
    if error is not None:
        assert response.json()["error"].startswith(error)


def test_unknown_path_and_wrong_method(inkit_simulator: InkitSimulator, http: httpx.Client) -> None:
    assert http.post(inkit_simulator.base_url + "/v1/nothing", json={}).status_code == 404
    assert http.get(inkit_simulator.webhook_url).status_code == 405
    assert http.put(inkit_simulator.render_url, json={}).status_code == 405


def test_render_returns_a_render_id(inkit_simulator: InkitSimulator, http: httpx.Client) -> None:
    first = render(http, inkit_simulator, merge_parameters={"Name": "Ada"}).json()
    second = render(http, inkit_simulator).json()
    assert RENDER_ID.fullmatch(first["id"])
    assert first["template_id"] == "tmpl_1"
    assert first["id"] != second["id"]
    recorded = inkit_simulator.requests()
    assert [r.render_id for r in recorded] == [first["id"], second["id"]]
    assert recorded[0].body == {"template_id": "tmpl_1", "merge_parameters": {"Name": "Ada"}}


# --- faults ------------------------------------------------------------------------------------


def test_fixed_latency(inkit_simulator: InkitSimulator, http: httpx.Client) -> None:
    webhook(http, inkit_simulator)  # connect outside the measurement
    inkit_simulator.set_faults(Faults(latency_ms=150))
    started = time.monotonic()
    assert webhook(http, inkit_simulator).status_code == 202
    assert 0.15 <= time.monotonic() - started < 1.0


def test_random_latency_stays_in_range(inkit_simulator: InkitSimulator, http: httpx.Client) -> None:
    webhook(http, inkit_simulator)
    inkit_simulator.set_faults(Faults(latency_ms=40, latency_max_ms=80))
    for _ in range(5):
        started = time.monotonic()
        webhook(http, inkit_simulator)
        assert 0.04 <= time.monotonic() - started < 0.5


def test_latency_does_not_block_other_connections(inkit_simulator: InkitSimulator) -> None:
    inkit_simulator.set_faults(Faults(latency_ms=1000))

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=10.0, limits=limits) as client:
            body = {"api_token": KEY, "template_id": "t"}
            calls = [client.post(inkit_simulator.webhook_url, json=body) for _ in range(100)]
            return [r.status_code for r in await asyncio.gather(*calls)]

    started = time.monotonic()
    statuses = asyncio.run(burst())
    # 100 sleeps of 1 s one after the other would take 100 s; concurrent ones take about 1 s.
    # The bound, a fifth of the serial time, leaves a busy machine 19 s for the rest (100
    # connections and requests, in this process beside the simulator's thread).
    assert time.monotonic() - started < 20.0
    assert statuses == [202] * 100


def test_429_with_retry_after(inkit_simulator: InkitSimulator, http: httpx.Client) -> None:
    inkit_simulator.set_faults(Faults(rate_429=1.0, retry_after_s=7))
    response = webhook(http, inkit_simulator)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert render(http, inkit_simulator).status_code == 429
    assert inkit_simulator.requests() == []
    assert inkit_simulator.stats()["by_status"] == {429: 2}


def test_5xx_with_a_chosen_status(inkit_simulator: InkitSimulator, http: httpx.Client) -> None:
    inkit_simulator.set_faults(Faults(rate_5xx=1.0, statuses_5xx=(502,)))
    assert webhook(http, inkit_simulator).status_code == 502


def test_5xx_statuses_are_drawn_uniformly(
    inkit_simulator: InkitSimulator, http: httpx.Client
) -> None:
    inkit_simulator.set_faults(Faults(rate_5xx=1.0))
    statuses = {webhook(http, inkit_simulator).status_code for _ in range(40)}
    assert statuses == {500, 502, 503}


def test_partial_rates_are_reproducible_with_a_seed(http: httpx.Client) -> None:
    def run(seed: int) -> list[int]:
        faults = Faults(rate_429=0.3, rate_5xx=0.2)
        with InkitSimulator(api_key=KEY, faults=faults, seed=seed) as sim:
            return [webhook(http, sim).status_code for _ in range(100)]

    first, again, other = run(1), run(1), run(2)
    assert first == again
    assert first != other
    assert 15 <= first.count(429) <= 45
    assert 5 <= sum(1 for s in first if s >= 500) <= 35


def test_hang_outlasts_the_client_timeout(inkit_simulator: InkitSimulator) -> None:
    inkit_simulator.set_faults(Faults(rate_hang=1.0, hang_s=10))
    with httpx.Client(timeout=0.2) as client, pytest.raises(httpx.ReadTimeout):
        client.post(inkit_simulator.webhook_url, json={"api_token": KEY, "template_id": "t"})
    assert inkit_simulator.stats()["hung"] == 1
    assert inkit_simulator.requests() == []


def test_hang_ends_with_a_close_and_no_response(
    inkit_simulator: InkitSimulator, http: httpx.Client
) -> None:
    inkit_simulator.set_faults(Faults(rate_hang=1.0, hang_s=0.3))
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        webhook(http, inkit_simulator)
    assert time.monotonic() - started >= 0.3


def test_drop_closes_without_response(inkit_simulator: InkitSimulator, http: httpx.Client) -> None:
    inkit_simulator.set_faults(Faults(rate_drop=1.0))
    with pytest.raises(httpx.TransportError):
        webhook(http, inkit_simulator)
    inkit_simulator.set_faults(Faults())
    assert webhook(http, inkit_simulator).status_code == 202  # a new connection works
    stats = inkit_simulator.stats()
    assert (stats["dropped"], stats["total"], stats["accepted"]) == (1, 2, 1)


@pytest.mark.parametrize("status", [503, 401])
def test_outage_window_ends_by_itself(
    inkit_simulator: InkitSimulator, http: httpx.Client, status: int
) -> None:
    ends = time.monotonic() + 0.5
    inkit_simulator.outage(status, 0.5)
    assert webhook(http, inkit_simulator).status_code == status
    assert render(http, inkit_simulator).status_code == status
    time.sleep(max(0.0, ends - time.monotonic()) + 0.05)
    assert webhook(http, inkit_simulator).status_code == 202


def test_outage_until_cleared(inkit_simulator: InkitSimulator, http: httpx.Client) -> None:
    inkit_simulator.outage(503)
    assert webhook(http, inkit_simulator).status_code == 503
    inkit_simulator.clear_outage()
    assert webhook(http, inkit_simulator).status_code == 202


def test_key_rotation(inkit_simulator: InkitSimulator, http: httpx.Client) -> None:
    inkit_simulator.set_api_key("rotated")
    assert webhook(http, inkit_simulator).status_code == 401
    assert render(http, inkit_simulator).status_code == 401
    assert webhook(http, inkit_simulator, "rotated").status_code == 202
    assert render(http, inkit_simulator, "rotated").status_code == 200


def test_fault_change_while_a_connection_is_open(
    inkit_simulator: InkitSimulator, http: httpx.Client
) -> None:
    control = SimulatorClient(inkit_simulator.base_url)
    assert webhook(http, inkit_simulator).status_code == 202
    control.set_faults(Faults(rate_429=1.0))
    assert webhook(http, inkit_simulator).status_code == 429  # same keep-alive connection
    control.set_faults(Faults())
    assert webhook(http, inkit_simulator).status_code == 202
    control.close()


@pytest.mark.parametrize(
    "bad", [{"rate_429": 0.7, "rate_5xx": 0.5}, {"rate_drop": -0.1}, {"statuses_5xx": (404,)}]
)
def test_invalid_faults_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        Faults(**bad)


# --- the record --------------------------------------------------------------------------------


def test_record_keeps_order_arrival_and_strips_the_token(
    inkit_simulator: InkitSimulator, http: httpx.Client
) -> None:
    before = time.time()
    for i in range(3):
        webhook(http, inkit_simulator, first_name=f"n{i}")
    webhook(http, inkit_simulator, "wrong")  # rejected: not recorded
    after = time.time()
    recorded = inkit_simulator.requests()
    assert [r.seq for r in recorded] == [1, 2, 3]
    assert [r.body for r in recorded] == [
        {"template_id": "tmpl_1", "first_name": f"n{i}"} for i in range(3)
    ]
    assert all(r.path == "/integrations/webhook" and r.render_id is None for r in recorded)
    arrivals = [r.arrival for r in recorded]
    assert before <= arrivals[0] <= arrivals[1] <= arrivals[2] <= after
    assert inkit_simulator.stats() == {
        "total": 4,
        "accepted": 3,
        "by_status": {202: 3, 401: 1},
        "dropped": 0,
        "hung": 0,
        "recorded": 3,
    }


def test_since_paging_and_reset(inkit_simulator: InkitSimulator, http: httpx.Client) -> None:
    for i in range(5):
        webhook(http, inkit_simulator, first_name=f"n{i}")
    assert [r.seq for r in inkit_simulator.requests(since=3)] == [4, 5]
    assert inkit_simulator.requests(since=5) == []
    inkit_simulator.reset()
    assert inkit_simulator.requests() == []
    assert inkit_simulator.stats()["total"] == 0
    webhook(http, inkit_simulator)
    assert [r.seq for r in inkit_simulator.requests()] == [1]


def test_max_records_keeps_the_newest(http: httpx.Client) -> None:
    with InkitSimulator(api_key=KEY, max_records=2) as sim:
        for i in range(10):
            webhook(http, sim, first_name=f"n{i}")
        recorded = sim.requests()
        assert len(recorded) <= 4
        assert recorded[-1].seq == 10
        assert [r.seq for r in sim.requests(since=8)] == [9, 10]
        assert sim.stats()["recorded"] == 10


# --- the HTTP control API ----------------------------------------------------------------------


def test_control_api_through_simulator_client(
    inkit_simulator: InkitSimulator, http: httpx.Client
) -> None:
    with SimulatorClient(inkit_simulator.base_url) as control:
        control.wait_ready()
        for _ in range(3):
            render(http, inkit_simulator)
        recorded = control.requests()
        assert recorded == inkit_simulator.requests()
        assert isinstance(recorded[0], RecordedRequest)
        assert [r.seq for r in control.requests(since=1, limit=1)] == [2]
        assert control.stats()["by_status"] == {200: 3}

        faults = Faults(latency_ms=1, rate_429=0.25, retry_after_s=2, statuses_5xx=(503,))
        control.set_faults(faults)
        assert control.faults() == faults == inkit_simulator.faults

        control.outage(401, 0.2)
        assert webhook(http, inkit_simulator).status_code == 401
        control.clear_outage()

        control.set_faults(Faults())
        control.set_api_key("rotated")
        assert webhook(http, inkit_simulator, "rotated").status_code == 202

        control.reset()
        assert control.requests() == []
        assert control.stats()["total"] == 0


def test_control_api_rejects_bad_input(inkit_simulator: InkitSimulator, http: httpx.Client) -> None:
    base = inkit_simulator.base_url + "/_sim/"
    assert http.post(base + "faults", json={"rate_429": 2}).status_code == 400
    assert http.post(base + "faults", json={"nonsense": 1}).status_code == 400
    assert http.post(base + "api-key", json={"api_key": ""}).status_code == 400
    assert http.get(base + "nothing").status_code == 404
    assert inkit_simulator.stats()["total"] == 0  # control calls are not counted


# --- HTTP/1.1 details, over a raw socket -------------------------------------------------------


def raw_request(body: bytes, *, extra: bytes = b"") -> bytes:
    return (
        b"POST /integrations/webhook HTTP/1.1\r\nHost: x\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("latency_ms", [0, 30])
def test_pipelined_requests_are_answered_in_order(
    inkit_simulator: InkitSimulator, latency_ms: float
) -> None:
    inkit_simulator.set_faults(Faults(latency_ms=latency_ms))
    good = b'{"api_token": "test-api-key", "template_id": "t"}'
    bad = b'{"api_token": "wrong", "template_id": "t"}'
    payload = (
        raw_request(good) + raw_request(bad) + raw_request(good, extra=b"Connection: close\r\n")
    )
    with socket.create_connection(("127.0.0.1", inkit_simulator.port), timeout=5) as sock:
        sock.sendall(payload)
        answer = read_all(sock)  # the server closes after the Connection: close request
    statuses = re.findall(rb"HTTP/1\.1 (\d{3})", answer)
    assert statuses == [b"202", b"401", b"202"]
    assert answer.count(b"Connection: close") == 1


def test_malformed_request_gets_400_and_close(inkit_simulator: InkitSimulator) -> None:
    with socket.create_connection(("127.0.0.1", inkit_simulator.port), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 400 ")


def test_expect_100_continue(inkit_simulator: InkitSimulator) -> None:
    body = b'{"api_token": "test-api-key", "template_id": "t"}'
    with socket.create_connection(("127.0.0.1", inkit_simulator.port), timeout=5) as sock:
        head = raw_request(body, extra=b"Expect: 100-continue\r\nConnection: close\r\n")
        sock.sendall(head[: -len(body)])
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert read_all(sock).startswith(b"HTTP/1.1 202 ")


def test_stop_cuts_hanging_connections() -> None:
    sim = InkitSimulator(api_key=KEY, faults=Faults(rate_hang=1.0, hang_s=60))
    sim.start()
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as sock:
        sock.sendall(raw_request(b'{"api_token": "test-api-key", "template_id": "t"}'))
        time.sleep(0.1)
        started = time.monotonic()
        sim.stop()
        assert time.monotonic() - started < 2.0
        assert read_all(sock) == b""


def test_cli_runs_until_sigterm() -> None:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "connector.testing.inkit_simulator", "--port", "0"),
            *("--api-key", "cli-key", "--rate-429", "1", "--seed", "3"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"inkit simulator listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        with httpx.Client(timeout=5.0) as client:
            response = client.post(
                match.group(1) + "/integrations/webhook",
                json={"api_token": "cli-key", "template_id": "t"},
            )
        assert response.status_code == 429
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
