"""Issue #13, defect 3 (its last sentence): any failed exchange with the schema registry is
``RegistryUnavailable`` (the partition waits and retries), never an exception that ends the
consume loop."""

from __future__ import annotations

import httpx
import pytest

from connector.errors import RegistryUnavailable
from connector.events.avro import SchemaRegistry


def _client(handler: httpx.MockTransport) -> SchemaRegistry:
    return SchemaRegistry("http://registry.test", http_client=httpx.Client(transport=handler))


def test_an_undecodable_registry_answer_is_registry_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"{not gzip")

    with pytest.raises(RegistryUnavailable, match="DecodingError"):
        _client(httpx.MockTransport(handler)).writer_schema(7)


def test_a_redirect_loop_is_registry_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": str(request.url)})

    http = httpx.Client(transport=httpx.MockTransport(handler), follow_redirects=True)
    client = SchemaRegistry("http://registry.test", http_client=http)
    with pytest.raises(RegistryUnavailable, match="TooManyRedirects"):
        client.writer_schema(7)
