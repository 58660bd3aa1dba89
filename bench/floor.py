"""The floor of the benchmark: a bare asyncio + httpx loop posting the same bodies, no Kafka.

Reads the request bodies (one JSON object per line, as the pipelines would post them), encodes
them before it starts, then posts them with ``--concurrency`` workers spread over
``httpx.AsyncClient`` pools of ``--pool-size`` connections (4, as the connector does). That is
the most the HTTP client can do on this machine: any pipeline's cost above it is Kafka,
decoding, mapping and bookkeeping. It keeps no per-user order (nothing
to order against) and exits when every body was accepted.

``--stack`` picks the HTTP stack: ``httpx`` (the default, issue #20's floor) posts with
``httpx.AsyncClient.post`` on httpx's default transport (httpcore on anyio); ``connector`` posts
as the connector does since issue #20, straight to transports built by
``connector.inkit.netio.build_transport`` (httpcore on the connector's asyncio backend). The
second is the floor of the connector's own HTTP stack: the connector's cost above it is all
Kafka, decoding, mapping and bookkeeping.

    python bench/floor.py --bodies bodies.jsonl --url URL --concurrency 64 [--stack connector]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator

import httpx

from connector.inkit.client import encode_body
from connector.inkit.netio import build_transport


async def post_all(
    bodies: list[bytes], url: str, concurrency: int, pool_size: int, stack: str = "httpx"
) -> None:
    headers = {"Content-Type": "application/json"}
    # httpcore scans its whole pool for every request it queues or releases, so one pool of 64+
    # connections costs milliseconds of CPU per request; the best httpx can do is several small
    # pools (the connector does the same, see connector/cli/run.py).
    pools = -(-concurrency // pool_size)
    size = -(-concurrency // pools)
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    queue = iter(bodies)
    if stack in ("connector", "httpx-transport"):
        transports = [
            build_transport(url, limits=limits)
            if stack == "connector"
            else httpx.AsyncHTTPTransport(limits=limits)
            for _ in range(pools)
        ]
        try:
            await asyncio.gather(
                *(_direct(transports[i % pools], queue, url, headers) for i in range(concurrency))
            )
        finally:
            for transport in transports:
                await transport.aclose()
        return
    clients = [httpx.AsyncClient(timeout=10.0, limits=limits) for _ in range(pools)]
    try:
        await asyncio.gather(
            *(_worker(clients[i % pools], queue, url, headers) for i in range(concurrency))
        )
    finally:
        for client in clients:
            await client.aclose()


async def _worker(
    client: httpx.AsyncClient, queue: Iterator[bytes], url: str, headers: dict[str, str]
) -> None:
    for body in queue:  # one shared iterator: each body goes to exactly one worker
        while True:
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError:
                continue
            if response.status_code < 500 and response.status_code != 429:
                break


async def _direct(
    transport: httpx.AsyncBaseTransport, queue: Iterator[bytes], url: str, headers: dict[str, str]
) -> None:
    """As ``_worker``, the way connector.inkit.client.InkitClient sends."""
    parsed = httpx.URL(url)
    extensions = {"timeout": httpx.Timeout(10.0).as_dict()}
    for body in queue:
        while True:
            request = httpx.Request(
                "POST", parsed, content=body, headers=headers, extensions=extensions
            )
            try:
                response = await transport.handle_async_request(request)
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            except httpx.HTTPError:
                continue
            if response.status_code < 500 and response.status_code != 429:
                break


def busy(stop: threading.Event, work_ms: float, rest_ms: float) -> None:
    """A second Python thread that takes the GIL as the connector's consume thread does: work
    in pure Python for ``work_ms`` (decoding- and mapping-like dict building), then rest in a
    blocking call that releases the GIL (``rest_ms``), again and again."""
    while not stop.is_set():
        until = time.perf_counter() + work_ms / 1000
        while time.perf_counter() < until:
            {str(i): [i, {"v": i}] for i in range(20)}
        time.sleep(rest_ms / 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bodies", required=True, help="JSON lines, one request body each")
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--pool-size", type=int, default=4, help="connections per httpx pool")
    parser.add_argument(
        "--stack",
        choices=("httpx", "connector", "httpx-transport"),
        default="httpx",
        help="httpx.AsyncClient.post on httpx's default transport, or straight to the "
        "connector's transports; httpx-transport (an experiment): straight to httpx's default "
        "transport, to tell the client layers' cost from the network backend's",
    )
    parser.add_argument(
        "--busy-ms",
        type=float,
        nargs=2,
        metavar=("WORK", "REST"),
        help="an experiment: a second thread works WORK ms in Python, then rests REST ms, "
        "throughout (does sharing the GIL make each request dearer? bench/RESULTS.md)",
    )
    args = parser.parse_args()
    with open(args.bodies, encoding="utf-8") as f:
        bodies = [encode_body(json.loads(line)) for line in f if line.strip()]
    stop = threading.Event()
    if args.busy_ms:
        threading.Thread(target=busy, args=(stop, *args.busy_ms), daemon=True).start()
    started = time.thread_time()
    try:
        asyncio.run(post_all(bodies, args.url, args.concurrency, args.pool_size, args.stack))
    finally:
        stop.set()
        # The HTTP thread's own CPU, apart from the busy thread's (stderr: the bench ignores it).
        print(f"http thread cpu s: {time.thread_time() - started:.3f}", file=sys.stderr)


if __name__ == "__main__":
    main()
