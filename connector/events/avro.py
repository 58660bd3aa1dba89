"""Avro plumbing: the bundled reader schema, the Confluent wire format and the schema registry."""

from __future__ import annotations

import functools
import json
import struct
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast
from urllib.parse import quote

import fastavro
import httpx

from connector import __version__
from connector.errors import RegistryUnavailable

# Confluent wire format: magic byte 0, then the schema id as a 4-byte big-endian integer.
MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")

# Containers (arrays/objects) a trait, context or integrations value may nest. The bundled
# schema spells out one JsonValueN record per level instead of one recursive JsonValue:
# fastavro's compiled reader recurses on the C stack without a depth check, and a 10 kB record
# nesting a few thousand arrays crashes the process (SIGSEGV) rather than raising an error.
MAX_NESTING = 10

# Deeper writer schemas (or recursive ones) are read with fastavro's pure-Python reader, which
# raises RecursionError instead of overflowing the C stack. ~2 kB of C stack per level is used.
MAX_FAST_SCHEMA_DEPTH = 64

REGISTRY_TIMEOUT_S = 10.0
_REGISTRY_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_PRIMITIVE_WIDTH = {
    "null": 0,
    "boolean": 1,
    "int": 1,
    "long": 1,
    "float": 4,
    "double": 8,
    "bytes": 1,
    "string": 1,
}

Schema = dict[str, Any]


class SchemaNotFound(LookupError):
    """The registry does not know this schema id (HTTP 404)."""


class InvalidSchema(ValueError):
    """A writer schema the connector cannot read with (not Avro, unparseable, or unsafe)."""


def load_schema_text(name: str = "identify.avsc") -> str:
    """The text of a schema shipped in ``connector.schemas`` (the repository's ``schemas/``)."""
    return resources.files("connector.schemas").joinpath(name).read_text(encoding="utf-8")


@functools.cache
def reader_schema() -> Schema:
    """The project's reader schema, parsed once per process."""
    return cast(Schema, fastavro.parse_schema(json.loads(load_schema_text())))


@functools.cache
def reader_canonical_form() -> str:
    return str(fastavro.schema.to_parsing_canonical_form(reader_schema()))


@dataclass(frozen=True, slots=True)
class WriterSchema:
    """A parsed writer schema and how records written with it are read.

    ``same_as_reader``: the bytes can be read with the reader schema alone (no resolution, the
    fastest path). ``needs_safe_reader``: the schema nests deeper than ``MAX_FAST_SCHEMA_DEPTH``
    or is recursive, so the pure-Python reader must be used.
    """

    schema_id: int
    parsed: Schema
    same_as_reader: bool
    needs_safe_reader: bool


def parse_writer_schema(
    schema_id: int, text: str, named: dict[str, Any] | None = None
) -> WriterSchema:
    """Parse and classify a writer schema; raise ``InvalidSchema`` if it cannot be used.

    ``named`` holds the schemas it references, parsed by ``parse_referenced`` (Confluent's
    schema references); it is copied, not changed.
    """
    try:
        parsed: Any = fastavro.parse_schema(json.loads(text), named_schemas=dict(named or {}))
    except (
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        fastavro.schema.SchemaParseException,
    ) as exc:
        raise InvalidSchema(f"schema {schema_id} is not a valid Avro schema") from exc
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        raise InvalidSchema(f"schema {schema_id} is not an Avro record")
    named = parsed.get("__named_schemas", {})
    if _has_zero_width_items(parsed, named, set()):
        # A corrupt block count over zero-width items would make the reader loop for ever.
        raise InvalidSchema(f"schema {schema_id} has an array of zero-width items")
    depth = _depth(parsed, named, frozenset(), {})
    canonical = fastavro.schema.to_parsing_canonical_form(parsed)
    return WriterSchema(
        schema_id=schema_id,
        parsed=parsed,
        same_as_reader=canonical == reader_canonical_form(),
        needs_safe_reader=depth > MAX_FAST_SCHEMA_DEPTH,
    )


@functools.cache
def bundled_writer_schema() -> WriterSchema:
    """The bundled schema as a writer schema (the fast path), parsed once per process."""
    return parse_writer_schema(0, load_schema_text())


def parse_referenced(schema_id: int, text: str, named: dict[str, Any]) -> None:
    """Parse a referenced schema into ``named`` (the names later schemas may use)."""
    try:
        fastavro.parse_schema(json.loads(text), named_schemas=named)
    except (
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        fastavro.schema.SchemaParseException,
    ) as exc:
        raise InvalidSchema(f"a schema referenced by {schema_id} is not valid Avro") from exc


def _depth(
    schema: Any, named: dict[str, Any], visiting: frozenset[str], memo: dict[str, int]
) -> int:
    """Nesting depth of a schema; ``MAX_FAST_SCHEMA_DEPTH + 1`` stands for "unbounded"."""
    unbounded = MAX_FAST_SCHEMA_DEPTH + 1
    if isinstance(schema, str):
        if schema in _PRIMITIVE_WIDTH:
            return 0
        if schema in visiting:
            return unbounded
        if schema not in memo:
            memo[schema] = _depth(named.get(schema, "null"), named, visiting, memo)
        return memo[schema]
    if isinstance(schema, list):
        return max((_depth(s, named, visiting, memo) for s in schema), default=0)
    kind = schema.get("type")
    if kind in ("record", "error"):
        inner = visiting | {schema["name"]}
        fields = (_depth(f["type"], named, inner, memo) for f in schema["fields"])
        return min(unbounded, 1 + max(fields, default=0))
    if kind == "array":
        return min(unbounded, 1 + _depth(schema["items"], named, visiting, memo))
    if kind == "map":
        return min(unbounded, 1 + _depth(schema["values"], named, visiting, memo))
    return 0


def _min_width(schema: Any, named: dict[str, Any], seen: set[str]) -> int:
    """Fewest bytes one value of this schema can take on the wire."""
    if isinstance(schema, str):
        if schema in _PRIMITIVE_WIDTH:
            return _PRIMITIVE_WIDTH[schema]
        if schema in seen:  # a recursive record is at least as wide as its other fields
            return 0
        return _min_width(named.get(schema, "null"), named, seen | {schema})
    if isinstance(schema, list):
        return 1  # the branch index
    kind = schema.get("type")
    if kind in ("record", "error"):
        inner = seen | {schema["name"]}
        return sum(_min_width(f["type"], named, inner) for f in schema["fields"])
    if kind == "fixed":
        return int(schema.get("size", 0))
    if kind in ("array", "map", "enum"):
        return 1
    return _PRIMITIVE_WIDTH.get(str(kind), 1)


def _has_zero_width_items(schema: Any, named: dict[str, Any], seen: set[str]) -> bool:
    if isinstance(schema, str):
        if schema in _PRIMITIVE_WIDTH or schema in seen:
            return False
        seen.add(schema)
        return _has_zero_width_items(named.get(schema, "null"), named, seen)
    if isinstance(schema, list):
        return any(_has_zero_width_items(s, named, seen) for s in schema)
    kind = schema.get("type")
    if kind in ("record", "error"):
        seen.add(schema["name"])
        return any(_has_zero_width_items(f["type"], named, seen) for f in schema["fields"])
    if kind == "array":
        items = schema["items"]
        return _min_width(items, named, set()) == 0 or _has_zero_width_items(items, named, seen)
    if kind == "map":
        return _has_zero_width_items(schema["values"], named, seen)
    return False


class SchemaRegistry:
    """A small Confluent Schema Registry client over an injected ``httpx.Client``.

    ``writer_schema(id)`` fetches ``GET /schemas/ids/{id}`` once per id (and each schema it
    references, ``GET /subjects/{subject}/versions/{version}``) and caches the parsed,
    classified schema; ``check_json_schema(id)`` checks once per id that it is a JSON Schema;
    ``register(subject, text)`` posts ``/subjects/{subject}/versions`` once per subject and
    caches the id. All block on HTTP. They raise ``SchemaNotFound`` (404),
    ``InvalidSchema`` (the schema is unusable; cached too, it cannot change) or
    ``RegistryUnavailable`` (network, timeout, auth or 5xx: not the record's fault).
    Not thread-safe for writes; a race at worst fetches a schema twice.
    """

    def __init__(
        self, base_url: str, user_info: str | None = None, http_client: httpx.Client | None = None
    ) -> None:
        self._base_url = base_url.rstrip("/")
        auth = tuple(user_info.split(":", 1)) if user_info else None
        self._owns_client = http_client is None
        self._http = http_client or httpx.Client(timeout=REGISTRY_TIMEOUT_S)
        self._auth = httpx.BasicAuth(auth[0], auth[1]) if auth else None
        self._headers = {
            "Accept": _REGISTRY_CONTENT_TYPE,
            "User-Agent": f"inkit-connector/{__version__}",
        }
        self._schemas: dict[int, WriterSchema | InvalidSchema] = {}
        self._json_ids: dict[int, str | None] = {}  # schema id -> why it is not JSON Schema
        self._ids: dict[tuple[str, str], int] = {}

    def close(self) -> None:
        if self._owns_client:
            self._http.close()

    def writer_schema(self, schema_id: int) -> WriterSchema:
        cached = self._schemas.get(schema_id)
        if cached is None:
            try:
                payload = self._fetch(schema_id)
                named: dict[str, Any] = {}
                self._resolve(schema_id, payload, named, set())
                cached = parse_writer_schema(schema_id, payload["schema"], named)
            except InvalidSchema as exc:  # cached too: the schema behind an id never changes
                cached = exc
            self._schemas[schema_id] = cached
        if isinstance(cached, InvalidSchema):
            raise cached
        return cached

    def check_json_schema(self, schema_id: int) -> None:
        """Raise ``SchemaNotFound`` or ``InvalidSchema`` unless ``schema_id`` is a JSON Schema."""
        if schema_id not in self._json_ids:
            payload = self._fetch(schema_id)
            schema_type = payload.get("schemaType", "AVRO")
            self._json_ids[schema_id] = (
                None
                if schema_type == "JSON"
                else f"schema {schema_id} is a {schema_type} schema, not JSON"
            )
        failure = self._json_ids[schema_id]
        if failure is not None:
            raise InvalidSchema(failure)  # a fresh one: a re-raised instance grows its traceback

    def register(self, subject: str, schema_text: str, schema_type: str = "AVRO") -> int:
        key = (subject, schema_text)
        if key not in self._ids:
            path = f"/subjects/{quote(subject, safe='')}/versions"
            body = {"schema": schema_text}
            if schema_type != "AVRO":
                body["schemaType"] = schema_type
            payload = self._call("POST", path, json=body)
            schema_id = payload.get("id")
            if not isinstance(schema_id, int):
                raise RegistryUnavailable("registry answered a registration without an id")
            self._ids[key] = schema_id
        return self._ids[key]

    def _fetch(self, schema_id: int) -> dict[str, Any]:
        payload = self._call("GET", f"/schemas/ids/{schema_id}", not_found=schema_id)
        if not isinstance(payload.get("schema"), str):
            raise InvalidSchema(f"schema {schema_id} has no schema text")
        return payload

    def _resolve(
        self, schema_id: int, payload: dict[str, Any], named: dict[str, Any], seen: set[str]
    ) -> None:
        """Parse into ``named`` every schema ``payload`` references, depth first (a reference
        may have references of its own); a reference cycle is cut at the second visit."""
        schema_type = payload.get("schemaType", "AVRO")
        if schema_type != "AVRO":
            raise InvalidSchema(f"schema {schema_id} is a {schema_type} schema, not Avro")
        references = payload.get("references") or []
        if not isinstance(references, list):
            raise InvalidSchema(f"schema {schema_id} has malformed references")
        for ref in references:
            subject, version = (
                (ref.get("subject"), ref.get("version")) if isinstance(ref, dict) else (None, None)
            )
            if not isinstance(subject, str) or not isinstance(version, int):
                raise InvalidSchema(f"schema {schema_id} has a malformed reference")
            key = f"{subject}/{version}"
            if key in seen:
                continue
            seen.add(key)
            path = f"/subjects/{quote(subject, safe='')}/versions/{version}"
            referenced = self._call("GET", path, not_found=schema_id)
            if not isinstance(referenced.get("schema"), str):
                raise InvalidSchema(f"a schema referenced by {schema_id} has no schema text")
            self._resolve(schema_id, referenced, named, seen)
            parse_referenced(schema_id, referenced["schema"], named)

    def _call(
        self, method: str, path: str, *, json: Any = None, not_found: int | None = None
    ) -> dict[str, Any]:
        headers = dict(self._headers)
        if json is not None:
            headers["Content-Type"] = _REGISTRY_CONTENT_TYPE
        try:
            response = self._http.request(
                method,
                self._base_url + path,
                json=json,
                headers=headers,
                auth=self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TimeoutException as exc:
            raise RegistryUnavailable("schema registry timed out") from exc
        except httpx.TransportError as exc:
            raise RegistryUnavailable("schema registry unreachable") from exc
        except httpx.HTTPError as exc:
            # Anything else about the exchange (a body that cannot be decoded, a redirect
            # loop): the registry's fault, not the record's; before, it crashed the loop.
            raise RegistryUnavailable(
                f"schema registry exchange failed: {type(exc).__name__}"
            ) from exc
        status = response.status_code
        if status == 404 and not_found is not None:
            raise SchemaNotFound(f"schema id {not_found} is not in the registry")
        if status in (409, 422) and method == "POST":
            # Registration refused: the schema is incompatible with the subject, or invalid.
            raise InvalidSchema(f"schema registry refused the schema (HTTP {status})")
        if status != 200:
            raise RegistryUnavailable(f"schema registry answered HTTP {status}")
        try:
            payload = response.json()
        except ValueError as exc:
            raise RegistryUnavailable("schema registry answered something other than JSON") from exc
        if not isinstance(payload, dict):
            raise RegistryUnavailable("schema registry answered an unexpected JSON value")
        return payload
