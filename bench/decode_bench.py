"""Micro-benchmark: microseconds to decode (and decode + map) one typical Identify record."""

from __future__ import annotations

import timeit
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx

from connector.events.avro import SchemaRegistry, load_schema_text
from connector.events.decoding import AvroDecoder, ConfluentAvroDecoder, Decoder, JsonDecoder
from connector.events.encoding import encode_event
from connector.events.mapping import Mapper
from connector.settings import Settings

# A realistic analytics.js Identify: reserved and Inkit traits, an Engage audience flag, context.
EVENT: dict[str, Any] = {
    "type": "identify",
    "messageId": "ajs-next-1714557600000-6a5c1e52-1f7e-4f1e-9b0b-3f1d2b9c8e11",
    "userId": "97980cfea0067",
    "anonymousId": "507f191e810c19729de860ea",
    "timestamp": "2024-05-01T10:00:00.000Z",
    "originalTimestamp": "2024-05-01T09:59:59.900Z",
    "sentAt": "2024-05-01T10:00:00.050Z",
    "receivedAt": "2024-05-01T10:00:00.200Z",
    "channel": "browser",
    "version": "1.1",
    "traits": {
        "template_id": "tmpl_3bDScFl9cwr3OAVR1RSdEC",
        "firstName": "Nick",
        "lastName": "Fury",
        "email": "n.fury@shield.com",
        "phone": "3107099497",
        "company": {"name": "SHIELD", "plan": "enterprise"},
        "address": {
            "street": "1 Rocket Road",
            "city": "Hawthorne",
            "state": "CA",
            "postalCode": "90250",
            "country": "US",
        },
        "address_line_2": "Suite 1",
        "plan": "premium",
        "logins": 42,
        "lifetime_value": 1234.5,
        "order_completed_last_30days": True,
        "tags": ["vip", "beta"],
    },
    "context": {
        "ip": "203.0.113.9",
        "locale": "en-US",
        "library": {"name": "analytics.js", "version": "next-1.64.0"},
        "page": {"path": "/account", "url": "https://example.com/account", "title": "Account"},
        "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36",
        "timezone": "America/Los_Angeles",
    },
    "integrations": {"All": True, "Inkit": True},
}


def _registry() -> SchemaRegistry:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"id": 1})
        return httpx.Response(200, json={"schema": load_schema_text()})

    return SchemaRegistry(
        "http://registry.bench", None, httpx.Client(transport=httpx.MockTransport(handler))
    )


def _per_call_us(func: Callable[[], object], number: int = 5000, repeat: int = 7) -> float:
    """Best of `repeat` runs, in microseconds per call: the minimum is the least disturbed by
    other processes (timeit's own advice); slower runs measure the machine, not the code."""
    runs = timeit.repeat(func, number=number, repeat=repeat)
    return min(runs) / number * 1e6


def _decode_and_map(decoder: Decoder, mapper: Mapper, value: bytes) -> object:
    return mapper.map(decoder.decode(value))


def main() -> None:
    settings = Settings(bootstrap_servers="bench:9092", topic="bench", inkit_api_key="k")
    mapper = Mapper(settings)
    cases: list[tuple[str, Decoder, bytes]] = [
        ("json", JsonDecoder(), encode_event(EVENT, "json")),
        ("avro", AvroDecoder(), encode_event(EVENT, "avro")),
        (
            "confluent-avro",
            ConfluentAvroDecoder(_registry()),
            encode_event(EVENT, "confluent-avro", _registry(), topic="bench"),
        ),
    ]
    print(f"{'format':<16}{'bytes':>7}{'decode µs':>12}{'decode+map µs':>16}")
    for name, decoder, value in cases:
        decoder.decode(value)  # warm up: the registry fetch happens here, once
        decode_us = _per_call_us(partial(decoder.decode, value))
        both_us = _per_call_us(partial(_decode_and_map, decoder, mapper, value))
        print(f"{name:<16}{len(value):>7}{decode_us:>12.1f}{both_us:>16.1f}")
    event = cases[0][1].decode(cases[0][2])
    print(f"{'map only':<16}{'':>7}{'':>12}{_per_call_us(lambda: mapper.map(event)):>16.1f}")


if __name__ == "__main__":
    main()
