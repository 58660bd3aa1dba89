"""Pipeline (b) of the benchmark: a quixstreams application with a custom batching sink.

Built the way quixstreams' documentation recommends for a custom destination: a
``BatchingSink`` subclass whose ``write(batch)`` delivers one partition's batch. The batch is
grouped by user (the record key, Segment's partitioning) and each user's events are posted one
after another, so per-user order holds; up to ``--concurrency`` (16) users are posted at once on a
private asyncio loop with one ``httpx.AsyncClient`` (the connector's HTTP client, so the two
differ by architecture, not by client). Decoding is quixstreams' ``AvroDeserializer`` with the
connector's reader schema, mapping is ``connector.events.mapping.Mapper``: the same bodies as the
connector's. Commits are quixstreams' (checkpoint every ``--commit-interval`` s, default 5 s, its
default); the sink's flush runs at each checkpoint, before the commit. Runs until SIGTERM.

    python bench/quix_pipeline.py --bootstrap 127.0.0.1:9092 --topic t --group g --url URL \
        --api-key K
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections import defaultdict
from typing import Any

import httpx
from quixstreams import Application
from quixstreams.models.serializers.avro import AvroDeserializer
from quixstreams.sinks import BatchingSink, SinkBatch

from connector.events import avro
from connector.events.decoding import message_from_avro
from connector.events.mapping import Mapper
from connector.inkit.client import encode_body
from connector.models import Skip
from connector.settings import Settings


class InkitSink(BatchingSink):
    """Posts each batch to Inkit: users concurrently (bounded), each user's events in order."""

    def __init__(self, url: str, concurrency: int) -> None:
        super().__init__()
        self._url = url
        self._concurrency = concurrency
        self._loop = asyncio.new_event_loop()
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client: httpx.AsyncClient | None = None
        self._limits = limits

    def setup(self) -> None:
        async def make() -> httpx.AsyncClient:
            return httpx.AsyncClient(timeout=10.0, limits=self._limits)

        self._client = self._loop.run_until_complete(make())

    def write(self, batch: SinkBatch) -> None:
        by_user: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for item in batch:
            by_user[item.key].append(item.value)
        self._loop.run_until_complete(self._post_users(list(by_user.values())))

    async def _post_users(self, users: list[list[dict[str, Any]]]) -> None:
        client = self._client
        assert client is not None
        headers = {"Content-Type": "application/json"}
        queue = iter(users)

        async def worker() -> None:
            for bodies in queue:
                for body in bodies:
                    while True:  # retry transient failures; order within the user holds
                        try:
                            response = await client.post(
                                self._url, content=encode_body(body), headers=headers
                            )
                        except httpx.HTTPError:
                            continue
                        if response.status_code < 500 and response.status_code != 429:
                            break

        await asyncio.gather(*(worker() for _ in range(self._concurrency)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--commit-interval", type=float, default=5.0)
    args = parser.parse_args()

    settings = Settings(
        bootstrap_servers=args.bootstrap,
        topic=args.topic,
        value_format="avro",
        inkit_api_key=args.api_key,
        inkit_api_url=args.url,
    )
    mapper = Mapper(settings)

    def to_body(record: dict[str, Any]) -> dict[str, Any] | None:
        request = mapper.map(message_from_avro(record))
        return None if isinstance(request, Skip) else request.body

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_interval=args.commit_interval,
        state_dir=tempfile.mkdtemp(prefix="quix-state-"),
        use_changelog_topics=False,
        auto_create_topics=False,
        loglevel="WARNING",
    )
    topic = app.topic(
        args.topic,
        key_deserializer="bytes",
        value_deserializer=AvroDeserializer(schema=avro.reader_schema()),
    )
    sdf = app.dataframe(topic)
    sdf = sdf.apply(to_body).filter(lambda body: body is not None)
    sdf.sink(InkitSink(args.url, args.concurrency))
    app.run()


if __name__ == "__main__":
    main()
