"""An in-memory Confluent Schema Registry behind httpx.MockTransport, for unit tests."""

from __future__ import annotations

import json

import httpx

from connector.events.avro import SchemaRegistry

REGISTRY_URL = "http://registry.test"


class FakeRegistry:
    """Serves ``GET /schemas/ids/{id}`` and ``POST /subjects/{s}/versions``; counts requests.

    ``fail_with`` makes every request answer that status (or raise, if it is an exception).
    """

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, int] = {}
        self.requests: list[httpx.Request] = []
        self.fail_with: int | Exception | None = None
        self.schema_type: dict[int, str] = {}
        self.references: dict[int, list[dict[str, object]]] = {}
        self.versions: dict[tuple[str, int], int] = {}  # (subject, version) -> schema id

    def add(self, schema_text: str, schema_id: int | None = None) -> int:
        schema_id = schema_id or len(self.schemas) + 1
        self.schemas[schema_id] = schema_text
        return schema_id

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if isinstance(self.fail_with, Exception):
            raise self.fail_with
        if self.fail_with is not None:
            return httpx.Response(self.fail_with, json={"message": "boom"})
        parts = request.url.path.strip("/").split("/")
        if request.method == "GET" and parts[:2] == ["schemas", "ids"]:
            schema_id = int(parts[2])
            if schema_id not in self.schemas:
                return httpx.Response(404, json={"error_code": 40403, "message": "not found"})
            return httpx.Response(200, json=self._view(schema_id))
        if request.method == "GET" and parts[0] == "subjects" and parts[2] == "versions":
            found = self.versions.get((parts[1], int(parts[3])))
            if found is None:
                return httpx.Response(404, json={"error_code": 40402, "message": "not found"})
            return httpx.Response(200, json=self._view(found))
        if request.method == "POST" and parts[0] == "subjects" and parts[2] == "versions":
            body = json.loads(request.content)
            text = body["schema"]
            known = [i for i, existing in self.schemas.items() if existing == text]
            schema_id = known[0] if known else self.add(text)
            if "schemaType" in body:
                self.schema_type[schema_id] = body["schemaType"]
            self.subjects[parts[1]] = schema_id
            return httpx.Response(200, json={"id": schema_id})
        return httpx.Response(405)

    def _view(self, schema_id: int) -> dict[str, object]:
        body: dict[str, object] = {"schema": self.schemas[schema_id]}
        if schema_id in self.schema_type:
            body["schemaType"] = self.schema_type[schema_id]
        if schema_id in self.references:
            body["references"] = self.references[schema_id]
        return body

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))

    def registry(self, user_info: str | None = None) -> SchemaRegistry:
        return SchemaRegistry(REGISTRY_URL, user_info, self.client())
