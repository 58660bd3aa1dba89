"""The connector inside the container, against the project's broker and the Inkit simulator
(host network): `check` passes, records flow, and `podman stop` (SIGTERM) drains, commits and
exits 0 within the chart's default grace period, writing nothing outside /tmp."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import yaml

from connector.testing.inkit_simulator import Faults, InkitSimulator
from tests.image.podman import (
    BUILD_TIMEOUT_S,
    RESTRICTED,
    ROOT,
    ULIMITS,
    BuiltImage,
    podman,
    run_in_image,
)
from tests.integration.harness import (
    Deliveries,
    committed,
    connector_env,
    free_port,
    identify,
    produce,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(BUILD_TIMEOUT_S)]

VALUES = yaml.safe_load((ROOT / "helm" / "inkit-connector" / "values.yaml").read_text())


def env_options(env: dict[str, str]) -> list[str]:
    return [option for key, value in env.items() for option in ("--env", f"{key}={value}")]


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"inkit-connector-test-{uuid.uuid4().hex[:12]}"
    yield name
    podman("rm", "--force", "--time", "0", name, check=False)


def test_check_inside_the_container(
    built_image: BuiltImage,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    inkit_simulator: InkitSimulator,
) -> None:
    topic = topic_factory(partitions=2)
    dlq = topic_factory(name=f"{topic}.dlq")
    env = connector_env(kafka_bootstrap, topic, dlq, inkit_simulator, f"group-{uuid.uuid4().hex}")
    result = run_in_image(built_image.name, "check", options=("--network=host", *env_options(env)))
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("ok   kafka", "ok   topic", "ok   dead-letter topic", "ok   inkit"):
        assert line in result.stdout
    assert env["INKIT_API_KEY"] not in result.stdout + result.stderr


def test_delivers_then_drains_commits_and_exits_0_on_podman_stop(
    built_image: BuiltImage,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    inkit_simulator: InkitSimulator,
    container_name: str,
) -> None:
    grace_s = int(VALUES["terminationGracePeriodSeconds"])
    topic = topic_factory(partitions=4)
    dlq = topic_factory(name=f"{topic}.dlq")
    group = f"group-{uuid.uuid4().hex}"
    # Slow enough that the stop lands mid-stream, with requests in flight.
    inkit_simulator.set_faults(Faults(latency_ms=20, latency_max_ms=60))
    rng = random.Random(7)
    users = [f"user-{i}" for i in range(40)]
    produced = produce(
        kafka_bootstrap, topic, [identify(rng.choice(users), n) for n in range(2000)]
    )
    metrics_port = free_port()
    env = connector_env(
        kafka_bootstrap,
        topic,
        dlq,
        inkit_simulator,
        group,
        # The chart's defaults for what decides the shutdown: the drain budget and the commits.
        DRAIN_TIMEOUT_SECONDS=str(VALUES["drainTimeoutSeconds"]),
        COMMIT_INTERVAL_SECONDS="1",
        INKIT_MAX_IN_FLIGHT="8",
        # The drain delivers every fetched record; a small buffer keeps it seconds long even on a
        # loaded machine (1000 records, the default here, took 12.7 s with two busy cores).
        MAX_BUFFERED_RECORDS="200",
        METRICS_HOST="127.0.0.1",
        METRICS_PORT=str(metrics_port),
    )
    podman(
        "run", "--detach", "--name", container_name, "--network=host", *ULIMITS, *RESTRICTED,
        *env_options(env), built_image.name, "run",
    )  # fmt: skip

    def logs() -> str:
        out = podman("logs", container_name, check=False)
        return out.stdout + out.stderr

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{metrics_port}/readyz", timeout=2).is_success
        except httpx.HTTPError:
            return False

    recorded: list[Any] = []

    def deliveries() -> Deliveries:
        recorded.extend(inkit_simulator.requests(since=recorded[-1].seq if recorded else 0))
        return Deliveries.of(recorded)

    wait_until(ready, 60, f"not ready; logs:\n{logs()[-3000:]}")
    # The image's HEALTHCHECK (for `docker run` and Compose) passes against the running connector.
    assert podman("healthcheck", "run", container_name, check=False).returncode == 0
    wait_until(lambda: len(deliveries().unique()) > 300, 60, logs()[-3000:])

    started = time.monotonic()
    podman("stop", "--time", str(grace_s), container_name, timeout_s=grace_s + 30)
    stopped_in_s = time.monotonic() - started
    print(f"podman stop: {stopped_in_s:.1f} s (grace period {grace_s} s)")
    state = podman(
        "inspect", "--format", "{{.State.ExitCode}} {{.State.OOMKilled}}", container_name
    ).stdout.split()
    text = logs()
    assert state == ["0", "false"], text[-3000:]  # 137 would mean SIGKILL after the grace period
    assert stopped_in_s < grace_s
    assert "received SIGTERM" in text
    assert "inkit-connector stopped" in text

    # Everything delivered before the stop is committed, and nothing beyond it: at-least-once
    # with the drain finished inside the container.
    delivered = deliveries()
    offsets = committed(kafka_bootstrap, group, topic, 4)
    covered = {(e.user, e.seq) for e in produced if e.offset < offsets[e.partition]}
    assert covered == delivered.unique()
    assert delivered.duplicates() == 0
    assert delivered.first_delivery_order_violations() == []
    assert len(covered) < len(produced)  # the stop did land mid-stream
    # Read-only root, /tmp on tmpfs: the container's layer holds only what podman itself changes
    # for any container (the /etc mount points of hosts and resolv.conf).
    assert diff(container_name) == diff(start(built_image.name, "--entrypoint", "true"))


def start(image: str, *options: str) -> str:
    """Run a container with the options of the test above to its end; returns its name."""
    name = f"inkit-connector-test-{uuid.uuid4().hex[:12]}"
    podman("run", "--name", name, "--network=host", *ULIMITS, *RESTRICTED, *options, image)
    return name


def diff(name: str) -> list[str]:
    try:
        return sorted(podman("diff", name).stdout.split("\n"))
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)
