"""The health port: metrics, liveness and readiness answer as documented, and a broken collector
gives 500 (logged once) instead of a traceback per scrape."""

import logging

import httpx
import pytest
from prometheus_client import CollectorRegistry

from connector.observability.health import HealthServer
from connector.observability.metrics import Metrics


class Broken:
    def collect(self) -> list[object]:
        raise RuntimeError("boom")


def serve(registry: CollectorRegistry, alive: bool = True, ready: bool = True) -> HealthServer:
    server = HealthServer(
        registry,
        host="127.0.0.1",
        port=0,
        alive=lambda: (alive, "ok" if alive else "wedged"),
        ready=lambda: (ready, "ok" if ready else "Inkit refuses the API key"),
    )
    server.start()
    return server


def test_endpoints() -> None:
    metrics = Metrics(CollectorRegistry())
    server = serve(metrics.registry, alive=True, ready=False)
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert "inkit_connector_build_info" in httpx.get(f"{base}/metrics").text
        assert httpx.get(f"{base}/healthz").status_code == 200
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 503
        assert "API key" in ready.text
        assert httpx.get(f"{base}/nope").status_code == 404
    finally:
        server.stop()


def test_a_broken_collector_answers_500_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    registry.register(Broken())  # type: ignore[arg-type]
    server = serve(registry)
    try:
        with caplog.at_level(logging.ERROR, logger="connector.observability.health"):
            for _ in range(3):
                assert httpx.get(f"http://127.0.0.1:{server.port}/metrics").status_code == 500
        assert len([r for r in caplog.records if "failed" in r.getMessage()]) == 1
    finally:
        server.stop()
