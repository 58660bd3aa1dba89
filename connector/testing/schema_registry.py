"""A minimal Confluent-compatible Schema Registry: the REST subset confluent-kafka's client uses."""

from __future__ import annotations

import argparse
import base64
import contextlib
import hmac
import json
import logging
import signal
import socket
import ssl
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import unquote, urlsplit

import fastavro
from fastavro.schema import SchemaParseException

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# Confluent's error codes (the client surfaces them as SchemaRegistryError.error_code).
SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
INVALID_SCHEMA = 42201
INVALID_VERSION = 42202


class RegistryError(Exception):
    """An HTTP error answer: status plus Confluent `error_code` and message."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


@dataclass
class _State:
    """Schemas are global (one id per distinct schema, shared by subjects); subjects list ids."""

    schemas: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> request-form schema
    ids_by_key: dict[str, int] = field(default_factory=dict)
    subjects: dict[str, list[int]] = field(default_factory=dict)  # version n is index n - 1
    compatibility: dict[str | None, str] = field(default_factory=lambda: {None: "BACKWARD"})


def _schema_key(schema: dict[str, Any]) -> str:
    # Whitespace and key order must not make two registrations of one schema differ.
    schema_type = schema.get("schemaType", "AVRO")
    text = schema["schema"]
    with contextlib.suppress(ValueError):
        text = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    refs = json.dumps(schema.get("references") or [], sort_keys=True)
    return f"{schema_type}|{refs}|{text}"


def _check_schema(schema: Any, named: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stored form of a registration body; ``named`` holds the Avro schemas its
    ``references`` name (``SchemaRegistry._referenced``), already parsed."""
    if not isinstance(schema, dict) or not isinstance(schema.get("schema"), str):
        raise RegistryError(422, INVALID_SCHEMA, "body must hold a 'schema' string")
    clean = {k: schema[k] for k in ("schema", "schemaType", "references") if schema.get(k)}
    if clean.get("schemaType", "AVRO") == "AVRO":
        try:
            fastavro.parse_schema(json.loads(clean["schema"]), named_schemas=dict(named or {}))
        except (SchemaParseException, ValueError, TypeError, KeyError, AttributeError) as exc:
            # fastavro reports malformed input through several unrelated types.
            raise RegistryError(422, INVALID_SCHEMA, f"invalid Avro schema: {exc}") from exc
    return clean


class SchemaRegistry:
    """A real HTTP server speaking the Confluent Schema Registry REST API, in memory.

    `start()` serves from daemon threads and returns once listening; `stop()` also cuts open
    keep-alive connections so that a stopped registry is really unreachable. `set_unavailable(True)`
    answers 503 to everything. All methods are thread-safe.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        basic_auth: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self._host = host
        self._port = port
        # (certificate, key) PEM files: serve https instead of http.
        self._tls: ssl.SSLContext | None = None
        if tls is not None:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(*tls)
        self._auth = (
            None
            if basic_auth is None
            else "Basic " + base64.b64encode(basic_auth.encode()).decode()
        )
        self._lock = threading.Lock()
        self._state = _State()
        self._unavailable = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "http" if self._tls is None else "https"
        return f"{scheme}://{self._host}:{self._port}"

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("schema registry already started")
        self._server = _Server((self._host, self._port), self, self._tls)
        self._port = self._server.server_address[1]
        # A short poll interval: shutdown() waits for one, and tests stop a registry each.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="schema-registry", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> SchemaRegistry:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def set_unavailable(self, unavailable: bool) -> None:
        self._unavailable = unavailable

    def register(
        self,
        subject: str,
        schema_str: str,
        schema_type: str = "AVRO",
        references: list[dict[str, Any]] | None = None,
    ) -> int:
        """Register directly (no HTTP); same schema → same id. Returns the schema id.

        ``references`` as Confluent spells them: ``[{"name", "subject", "version"}]``, each a
        version already registered here."""
        body = {"schema": schema_str, "schemaType": schema_type, "references": references}
        return int(self._register(subject, self._checked(body))["id"])

    def _checked(self, body: Any) -> dict[str, Any]:
        """``_check_schema`` with the schemas that ``body``'s references name."""
        with self._lock:
            named = self._referenced(body.get("references") if isinstance(body, dict) else None)
        return _check_schema(body, named)

    def _referenced(self, references: Any, named: dict[str, Any] | None = None) -> dict[str, Any]:
        """Parse every referenced Avro schema (depth first) into one named-schemas dict, as
        Confluent's registry does to validate a schema with references. Lock held."""
        named = {} if named is None else named
        if references is None:
            return named
        if not isinstance(references, list):
            raise RegistryError(422, INVALID_SCHEMA, "references must be a list")
        for ref in references:
            subject = ref.get("subject") if isinstance(ref, dict) else None
            version = ref.get("version") if isinstance(ref, dict) else None
            versions = self._state.subjects.get(subject) if isinstance(subject, str) else None
            if not versions or not isinstance(version, int) or not 1 <= version <= len(versions):
                raise RegistryError(422, INVALID_SCHEMA, f"Invalid schema reference {ref}")
            target = self._state.schemas[versions[version - 1]]
            self._referenced(target.get("references"), named)
            if target.get("schemaType", "AVRO") == "AVRO":
                with contextlib.suppress(SchemaParseException, ValueError):
                    fastavro.parse_schema(json.loads(target["schema"]), named_schemas=named)
        return named

    # --- request handling, called from handler threads ---------------------------------------

    def authorized(self, header: str | None) -> bool:
        return self._auth is None or hmac.compare_digest(header or "", self._auth)

    @property
    def unavailable(self) -> bool:
        return self._unavailable

    def _register(self, subject: str, schema: dict[str, Any]) -> dict[str, Any]:
        key = _schema_key(schema)
        with self._lock:
            st = self._state
            schema_id = st.ids_by_key.get(key)
            if schema_id is None:
                schema_id = len(st.schemas) + 1
                st.ids_by_key[key] = schema_id
                st.schemas[schema_id] = schema
            versions = st.subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            return self._version_view(subject, versions.index(schema_id) + 1)

    def _version_view(self, subject: str, version: int) -> dict[str, Any]:
        schema_id = self._state.subjects[subject][version - 1]
        return {"subject": subject, "version": version, "id": schema_id}

    def _versions(self, subject: str) -> list[int]:
        versions = self._state.subjects.get(subject)
        if not versions:
            raise RegistryError(404, SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        return versions

    def _schema(self, schema_id: int) -> dict[str, Any]:
        schema = self._state.schemas.get(schema_id)
        if schema is None:
            raise RegistryError(404, SCHEMA_NOT_FOUND, "Schema not found")
        return schema

    def dispatch(self, method: str, parts: list[str], body: Any) -> Any:
        """Route one request; returns the JSON answer or raises RegistryError."""
        if (
            method == "POST"
            and len(parts) == 3
            and parts[0] == "subjects"
            and parts[2] == "versions"
        ):
            view = self._register(parts[1], self._checked(body))
            with self._lock:
                return {**view, **self._state.schemas[view["id"]]}
        with self._lock:
            return self._dispatch_locked(method, parts, body)

    def _dispatch_locked(self, method: str, parts: list[str], body: Any) -> Any:
        st = self._state
        match (method, *parts):
            case ("GET", "subjects"):
                return sorted(st.subjects)
            case ("GET", "schemas", "types"):
                return ["AVRO", "JSON", "PROTOBUF"]
            case ("GET", "schemas", "ids", sid):
                return self._schema(_int(sid, SCHEMA_NOT_FOUND))
            case ("GET", "schemas", "ids", sid, "versions" | "subjects" as what):
                schema_id = _int(sid, SCHEMA_NOT_FOUND)
                self._schema(schema_id)
                uses = [
                    (s, v.index(schema_id) + 1) for s, v in st.subjects.items() if schema_id in v
                ]
                if what == "subjects":
                    return [s for s, _ in uses]
                return [{"subject": s, "version": n} for s, n in uses]
            case ("POST", "subjects", subject):
                versions = self._versions(subject)
                found = st.ids_by_key.get(
                    _schema_key(
                        _check_schema(
                            body,
                            self._referenced(
                                body.get("references") if isinstance(body, dict) else None
                            ),
                        )
                    )
                )
                if found is None or found not in versions:
                    raise RegistryError(404, SCHEMA_NOT_FOUND, "Schema not found")
                view = self._version_view(subject, versions.index(found) + 1)
                return {**view, **st.schemas[found]}
            case ("GET", "subjects", subject, "versions"):
                return list(range(1, len(self._versions(subject)) + 1))
            case ("GET", "subjects", subject, "versions", version):
                versions = self._versions(subject)
                n = len(versions) if version in ("latest", "-1") else _int(version, INVALID_VERSION)
                if not 1 <= n <= len(versions):
                    raise RegistryError(404, VERSION_NOT_FOUND, f"Version {version} not found.")
                return {**self._version_view(subject, n), **st.schemas[versions[n - 1]]}
            case ("DELETE", "subjects", subject):
                versions = self._versions(subject)
                del st.subjects[subject]
                return list(range(1, len(versions) + 1))
            case ("GET", "config", *rest) if len(rest) <= 1:
                # Subject-level config falls back to the global one (defaultToGlobal semantics).
                level = st.compatibility.get(rest[0] if rest else None, st.compatibility[None])
                return {"compatibilityLevel": level}
            case ("PUT", "config", *rest) if len(rest) <= 1 and isinstance(body, dict):
                level = str(body.get("compatibility", "BACKWARD")).upper()
                st.compatibility[rest[0] if rest else None] = level
                return {"compatibility": level}
            case ("GET", "mode", *_):
                return {"mode": "READWRITE"}
            case ("GET",):
                return {}
        raise RegistryError(404, 404, "HTTP 404 Not Found")


def _int(text: str, error_code: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise RegistryError(
            404 if error_code != INVALID_VERSION else 422, error_code, text
        ) from None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], registry: SchemaRegistry, tls: ssl.SSLContext | None
    ) -> None:
        self.registry = registry
        self._tls = tls
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self._tls is not None:
            # The handshake runs on the handler thread's first read, not in the accept loop, so
            # a client that never finishes it cannot block other connections.
            sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._open_lock:
            self._open.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that refuses our certificate (the untrusted-CA tests) is not a server fault.
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
            logger.debug("TLS connection from %s failed: %s", client_address, sys.exc_info()[1])
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._open_lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's httpx pool expects
    server: _Server

    def _handle(self) -> None:
        registry = self.server.registry
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            if registry.unavailable:
                raise RegistryError(503, 50301, "Service Unavailable (simulated)")
            if not registry.authorized(self.headers.get("Authorization")):
                raise RegistryError(401, 401, "Unauthorized")
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                raise RegistryError(400, 400, "body is not valid JSON") from None
            path = urlsplit(self.path).path
            parts = [unquote(p) for p in path.strip("/").split("/") if p]
            status, answer = 200, registry.dispatch(self.command, parts, body)
        except RegistryError as exc:
            status, answer = exc.status, {"error_code": exc.error_code, "message": str(exc)}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="schema-registry"')
        self.end_headers()
        self.wfile.write(data)

    # http.server dispatches on these stdlib-mandated names.
    do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("schema registry: %s", format % args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--basic-auth", default=None, help="user:password")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with SchemaRegistry(args.host, args.port, basic_auth=args.basic_auth) as registry:
        logger.info("schema registry listening on %s", registry.url)
        while not stopping.wait(0.5):
            pass
    logger.info("schema registry stopped")


if __name__ == "__main__":
    main()
