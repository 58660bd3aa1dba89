"""Pipeline (a) of the benchmark: the naive loop a user writes in an afternoon.

confluent-kafka ``poll()``, fastavro decode, the connector's mapping (so the bodies are the same
as every other pipeline's), ``httpx.Client.post`` and a synchronous commit per record. One request
at a time: the baseline the issue measures everything against. Runs until SIGTERM.

    python bench/naive_loop.py --bootstrap 127.0.0.1:9092 --topic t --group g --url URL --api-key K
"""

from __future__ import annotations

import argparse
import io
import signal
from types import FrameType

import fastavro
import httpx
from confluent_kafka import Consumer

from connector.events import avro
from connector.events.decoding import message_from_avro
from connector.events.mapping import Mapper
from connector.models import Skip
from connector.settings import Settings

_running = True


def _stop(_signum: int, _frame: FrameType | None) -> None:
    global _running
    _running = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--api-key", required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    schema = avro.reader_schema()
    settings = Settings(
        bootstrap_servers=args.bootstrap,
        topic=args.topic,
        value_format="avro",
        inkit_api_key=args.api_key,
        inkit_api_url=args.url,
    )
    mapper = Mapper(settings)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([args.topic])
    client = httpx.Client(timeout=10.0)
    try:
        while _running:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            record = fastavro.schemaless_reader(io.BytesIO(msg.value()), schema, None)
            request = mapper.map(message_from_avro(record))
            if not isinstance(request, Skip):
                while _running:  # retry until Inkit takes it, as a careful afternoon would
                    try:
                        response = client.post(request.url, json=request.body)
                    except httpx.HTTPError:
                        continue
                    if response.status_code < 500 and response.status_code != 429:
                        break
            consumer.commit(message=msg, asynchronous=False)
    finally:
        consumer.close()
        client.close()


if __name__ == "__main__":
    main()
