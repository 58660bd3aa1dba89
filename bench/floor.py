"""The floor of the benchmark: a bare asyncio + httpx loop posting the same bodies, no Kafka.

Reads the request bodies (one JSON object per line, as the pipelines would post them), encodes
them before it starts, then posts them with ``--concurrency`` workers spread over
``httpx.AsyncClient`` pools of ``--pool-size`` connections (4, as the connector does). That is
the most the HTTP client can do on this machine: any pipeline's cost above it is Kafka,
decoding, mapping and bookkeeping. It keeps no per-user order (nothing
to order against) and exits when every body was accepted.

    python bench/floor.py --bodies bodies.jsonl --url URL --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Iterator

import httpx

from connector.inkit.client import encode_body


async def post_all(bodies: list[bytes], url: str, concurrency: int, pool_size: int) -> None:
    headers = {"Content-Type": "application/json"}
    # httpcore scans its whole pool for every request it queues or releases, so one pool of 64+
    # connections costs milliseconds of CPU per request; the best httpx can do is several small
    # pools (the connector does the same, see connector/cli/run.py).
    pools = -(-concurrency // pool_size)
    size = -(-concurrency // pools)
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    clients = [httpx.AsyncClient(timeout=10.0, limits=limits) for _ in range(pools)]
    queue = iter(bodies)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bodies", required=True, help="JSON lines, one request body each")
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--pool-size", type=int, default=4, help="connections per httpx pool")
    args = parser.parse_args()
    with open(args.bodies, encoding="utf-8") as f:
        bodies = [encode_body(json.loads(line)) for line in f if line.strip()]
    asyncio.run(post_all(bodies, args.url, args.concurrency, args.pool_size))


if __name__ == "__main__":
    main()
