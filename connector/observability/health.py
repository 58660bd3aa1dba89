"""HealthServer: /metrics, /healthz (the consume loop is alive) and /readyz on one port."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

logger = logging.getLogger(__name__)


class HealthServer:
    """Serves the three endpoints from a daemon thread until ``stop``.

    ``alive()`` and ``ready()`` are called on each probe and must be cheap and thread-safe
    (they read a few attributes). ``port`` is the bound port (useful when 0 was asked).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        host: str,
        port: int,
        alive: Callable[[], tuple[bool, str]],
        ready: Callable[[], tuple[bool, str]],
    ) -> None:
        handler = _handler_class(registry, alive, ready)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_class(
    registry: CollectorRegistry,
    alive: Callable[[], tuple[bool, str]],
    ready: Callable[[], tuple[bool, str]],
) -> type[BaseHTTPRequestHandler]:
    failed_paths: set[str] = set()  # endpoints whose failure was already logged

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                self._route(path)
            except Exception:
                # A broken collector must not print a traceback per scrape, nor stay silent:
                # the first failure of each endpoint is logged whole, later ones answer 500.
                if path not in failed_paths:
                    failed_paths.add(path)
                    logger.exception("health endpoint %s failed", path)
                self._send(500, b"internal error\n", "text/plain")

        def _route(self, path: str) -> None:
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/livez"):
                self._probe(alive())
            elif path == "/readyz":
                self._probe(ready())
            else:
                self._send(404, b"not found\n", "text/plain")

        def _probe(self, state: tuple[bool, str]) -> None:
            ok, why = state
            self._send(200 if ok else 503, (why + "\n").encode(), "text/plain; charset=utf-8")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the log

    return Handler
