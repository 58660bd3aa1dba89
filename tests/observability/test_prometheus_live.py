"""Every dashboard query and alert expression, evaluated by a real Prometheus scraping /metrics.

**Harness test.** By default the scraped endpoint is NOT the connector: it is a tiny HTTP server
exposing a ``connector.observability.metrics.Metrics`` registry whose metric objects a background
thread drives directly (deliveries, 503s and retries, a 429, a dead letter, lag per partition,
end-to-end latency). It proves that the queries, the rules file and the exposition fit
together: names, labels, types, and the target labels a ServiceMonitor adds.

To point it at a real connector instead, replace the ``metrics_target`` fixture (or set
``INKIT_CONNECTOR_METRICS_TARGET=host:port`` to scrape one that is already running): it yields a
``MetricsTarget`` with the address and the metric names expected to carry data.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, start_http_server

from connector.observability.metrics import Metrics
from connector.testing.inkit_simulator import Faults, InkitSimulator
from tests.fixtures.prometheus import JOB_NAME, TARGET_LABELS, PrometheusServer, PromQLError
from tests.integration.harness import ConnectorProcess, connector_env, identify, produce
from tests.observability import (
    RULES_PATH,
    dashboard_queries,
    load_dashboard,
    load_rules,
    metric_names,
    rule_exprs,
    substitute,
    variable_selectors,
)

pytestmark = pytest.mark.integration

TARGET_ENV = "INKIT_CONNECTOR_METRICS_TARGET"
TRAFFIC_TICK_S = 0.05
# Grafana computes $__rate_interval as at least 4 scrape intervals; a minute keeps every sample
# the young server has in the window.
RATE_INTERVAL = "1m"
# Series that exist from the connector's start (no traffic needed): enough for a target we
# don't drive ourselves.
ALWAYS_PRESENT = frozenset(
    {
        "inkit_connector_build_info",
        "inkit_connector_ready",
        "inkit_connector_auth_blocked",
        "inkit_connector_assigned_partitions",
        "inkit_connector_paused_partitions",
        "inkit_connector_requests_in_flight",
        "inkit_connector_buffered_records",
        "inkit_connector_rate_limited_total",
        "inkit_connector_retries_total",
        "inkit_connector_offset_commits_total",
        "inkit_connector_rebalances_total",
        "inkit_connector_dead_letter_produce_failures_total",
        "inkit_connector_http_request_duration_seconds_bucket",
        "inkit_connector_end_to_end_latency_seconds_bucket",
        "up",
    }
)


@dataclass(frozen=True)
class MetricsTarget:
    """A /metrics endpoint for Prometheus to scrape.

    ``with_data``: series names that must return data; a query over only these names must not
    come back empty. ``harness``: True when the endpoint is the simulated one below, whose exact
    values the test may check.
    """

    address: str
    with_data: frozenset[str]
    metrics_path: str = "/metrics"
    harness: bool = False

    @property
    def url(self) -> str:
        return f"http://{self.address}{self.metrics_path}"


class _Traffic:
    """Drives a Metrics catalogue the way the connector would, from a background thread."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-traffic", daemon=True)

    def start(self) -> None:
        m = self._m
        m.ready.set(1)
        m.auth_blocked.set(0)
        m.assigned_partitions.set(2)
        m.paused_partitions.set(0)
        m.rebalances.labels("assigned").inc()
        m.consumer_lag.labels("identify", "0").set(12)
        m.consumer_lag.labels("identify", "1").set(7)
        # One record Inkit refused for good, and one 429 with its retry.
        m.records.labels("dead_lettered", "http_400").inc()
        m.http_requests.labels("400").inc()
        m.http_requests.labels("429").inc()
        m.rate_limited.inc()
        m.retries.labels("rate_limited").inc()
        self._tick(0)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        n = 1
        while not self._stop.wait(TRAFFIC_TICK_S):
            self._tick(n)
            n += 1

    def _tick(self, n: int) -> None:
        m = self._m
        m.in_flight.set(n % 3)
        m.buffered.set(5 + n % 4)
        m.records_consumed.labels("identify").inc()
        if n % 5 == 4:  # every fifth request: a 503, retried
            m.http_requests.labels("503").inc()
            m.http_request_duration.observe(0.4)
            m.retries.labels("server_error").inc()
            return
        m.http_requests.labels("200").inc()
        m.http_request_duration.observe(0.02 + (n % 10) / 100)
        m.records.labels("delivered", "ok").inc()
        m.end_to_end_latency.observe(1.5)
        m.last_delivery.set_to_current_time()
        m.committed_offset.labels("identify", str(n % 2)).set(1000 + n)
        m.offset_commits.labels("success").inc()


@pytest.fixture
def harness_metrics_target() -> Iterator[MetricsTarget]:
    """The simulated exporter: a fresh Metrics registry served on a free loopback port."""
    metrics = Metrics(CollectorRegistry())
    server, thread = start_http_server(0, addr="127.0.0.1", registry=metrics.registry)
    traffic = _Traffic(metrics)
    traffic.start()
    try:
        yield MetricsTarget(
            address=f"127.0.0.1:{server.server_port}",
            with_data=ALWAYS_PRESENT
            | {
                "inkit_connector_records_total",
                "inkit_connector_records_consumed_total",
                "inkit_connector_http_requests_total",
                "inkit_connector_consumer_lag_records",
                "inkit_connector_committed_offset",
                "inkit_connector_last_delivery_timestamp_seconds",
            },
            harness=True,
        )
    finally:
        traffic.stop()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def connector_metrics_target(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
) -> Iterator[MetricsTarget]:
    """The real thing: `inkit-connector run` on the real broker and the simulator, fed a steady
    stream (with 5xx and 429 faults and a few broken records) for as long as the test runs."""
    topic = topic_factory(partitions=2)
    dlq = topic_factory(partitions=1)
    inkit_simulator.set_faults(
        Faults(latency_ms=5, latency_max_ms=30, rate_5xx=0.1, rate_429=0.05, retry_after_s=0.2)
    )
    produce(
        kafka_bootstrap,
        topic,
        [identify(f"u{i % 20}", i) for i in range(200)],
        raw=[(b"bad", b"not avro"), (b"bad", b"")],
    )
    connector = ConnectorProcess(
        connector_env(kafka_bootstrap, topic, dlq, inkit_simulator, f"g-{uuid.uuid4().hex[:8]}"),
        tmp_path,
    ).start()
    stop = threading.Event()

    def feed() -> None:
        seq = 200
        while not stop.wait(0.2):
            produce(kafka_bootstrap, topic, [identify(f"u{seq % 20}", seq)])
            seq += 1

    feeder = threading.Thread(target=feed, daemon=True)
    try:
        connector.wait_ready()
        feeder.start()
        yield MetricsTarget(
            address=f"127.0.0.1:{connector.metrics_port}",
            with_data=ALWAYS_PRESENT
            | {
                "inkit_connector_records_total",
                "inkit_connector_records_consumed_total",
                "inkit_connector_http_requests_total",
                "inkit_connector_consumer_lag_records",
                "inkit_connector_committed_offset",
                "inkit_connector_last_delivery_timestamp_seconds",
            },
        )
    finally:
        stop.set()
        feeder.join(5)
        connector.stop()


@pytest.fixture(params=["harness", "connector"])
def metrics_target(request: pytest.FixtureRequest) -> MetricsTarget:
    """What Prometheus scrapes: the harness, a real connector, or one named by the environment."""
    address = os.environ.get(TARGET_ENV)
    if address:
        return MetricsTarget(address=address, with_data=ALWAYS_PRESENT)
    target: MetricsTarget = request.getfixturevalue(f"{request.param}_metrics_target")
    return target


def _scraping(
    prometheus_server: Callable[..., PrometheusServer], metrics_target: MetricsTarget
) -> PrometheusServer:
    server = prometheus_server(
        targets=[metrics_target.address],
        rule_files=[RULES_PATH],
        metrics_path=metrics_target.metrics_path,
    )
    server.wait_for_samples("inkit_connector_build_info", timeout=20)
    # rate() needs two samples in its window: wait for a third scrape to be safe.
    server.wait_for_samples(
        f'count_over_time(up{{job="{JOB_NAME}"}}[{RATE_INTERVAL}]) >= 3', timeout=10
    )
    return server


@pytest.fixture
def prometheus(
    prometheus_server: Callable[..., PrometheusServer], metrics_target: MetricsTarget
) -> PrometheusServer:
    """Prometheus with the alert rules loaded, after it holds a few samples of the target."""
    return _scraping(prometheus_server, metrics_target)


@pytest.fixture
def harness_prometheus(
    prometheus_server: Callable[..., PrometheusServer], harness_metrics_target: MetricsTarget
) -> PrometheusServer:
    return _scraping(prometheus_server, harness_metrics_target)


def _has_data(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


def test_promtool_check_metrics_accepts_the_exposition(metrics_target: MetricsTarget) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not on PATH: run scripts/install-prometheus.sh")
    text = httpx.get(metrics_target.url, timeout=5).text
    assert "inkit_connector_build_info" in text
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"promtool check metrics:\n{result.stdout}{result.stderr}"


def test_queries_and_alerts_evaluate_in_prometheus(
    prometheus: PrometheusServer, metrics_target: MetricsTarget
) -> None:
    values = {
        "rate_interval": RATE_INTERVAL,
        "namespace": TARGET_LABELS["namespace"],
        "pod": TARGET_LABELS["pod"],
    }
    dashboard = load_dashboard()
    queries = [
        *dashboard_queries(dashboard),
        *variable_selectors(dashboard),
        *((f"alert {name}", expr) for name, expr in rule_exprs(load_rules())),
    ]
    errors: list[str] = []
    for where, expr in queries:
        promql = substitute(expr, **values)
        try:
            result = prometheus.query(promql)
        except PromQLError as exc:
            errors.append(f"{where}: {exc}")
            continue
        # Alerts are quiet on healthy traffic; every other query over metrics with data answers.
        needs_data = not where.startswith("alert") and metric_names(promql) <= set(
            metrics_target.with_data
        )
        if needs_data and not _has_data(result):
            errors.append(f"{where}: no data\n  query: {promql}\n  result: {result}")
    assert not errors, f"{len(errors)} of {len(queries)} queries failed:\n" + "\n".join(errors)

    # The rule manager loaded the file and evaluates every rule without error.
    groups = prometheus.rule_groups()
    assert [group["name"] for group in groups] == ["inkit-connector"]
    rules = groups[0]["rules"]
    assert len(rules) == len(rule_exprs(load_rules()))
    for rule in rules:
        assert rule["health"] in {"ok", "unknown"}, f"{rule['name']}: {rule.get('lastError')}"
        assert not rule.get("lastError"), f"{rule['name']}: {rule['lastError']}"

    # The Down alert's job regex matches the scrape job, and the target is up.
    up = prometheus.query('up{job=~".*inkit-connector.*"}')
    assert [float(series["value"][1]) for series in up] == [1.0]


def test_harness_values_arrive_with_their_labels(harness_prometheus: PrometheusServer) -> None:
    """The simulated traffic comes back through Prometheus as the panels expect to read it."""
    prometheus = harness_prometheus
    sel = 'namespace="test", pod="test-0"'

    lag = prometheus.query(f"inkit_connector_consumer_lag_records{{{sel}}}")
    assert {s["metric"]["partition"]: float(s["value"][1]) for s in lag} == {"0": 12.0, "1": 7.0}

    codes = prometheus.query(
        f"sum by (code) (increase(inkit_connector_http_requests_total{{{sel}}}[1m]))"
    )
    assert {"200", "503", "400", "429"} <= {s["metric"]["code"] for s in codes}

    p50 = prometheus.query(
        "histogram_quantile(0.5, sum by (le) "
        f"(rate(inkit_connector_http_request_duration_seconds_bucket{{{sel}}}[1m])))"
    )
    assert 0.01 < float(p50[0]["value"][1]) <= 0.5

    e2e = prometheus.query(
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(inkit_connector_end_to_end_latency_seconds_bucket{{{sel}}}[1m])))"
    )
    assert 1.0 < float(e2e[0]["value"][1]) <= 2.5

    delivered = prometheus.query(
        f'sum(rate(inkit_connector_records_total{{{sel}, outcome="delivered"}}[1m]))'
    )
    assert float(delivered[0]["value"][1]) > 0
