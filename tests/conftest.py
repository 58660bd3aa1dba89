"""Shared test configuration. Fixtures live in tests/fixtures/, one module per real service."""

from __future__ import annotations

import pytest

from connector.testing.kafka_jars import KAFKA3_VERSION

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.simulator",
    "tests.fixtures.prometheus",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow", action="store_true", default=False, help="also run the long soak/chaos modes"
    )


# `make test` runs the suite on two pytest-xdist workers (--dist loadgroup), each with its own
# session fixtures. Tests that share something costly to set up stay on one worker: the image
# tests one podman build, the kafka3 tests one Kafka 3.x broker, and a module with a module-scoped
# broker that broker. Everything else goes to whichever worker is free.
XDIST_GROUP_DIRS = {"image": "tests/image/"}
XDIST_GROUP_MODULES = ("tests/integration/test_kafka_broker.py", "tests/reliability/test_sasl.py")


def xdist_group_of(item: pytest.Item) -> str | None:
    """The xdist group ``item`` runs in, or None when any worker may take it."""
    path = item.nodeid.split("::")[0]
    for group, prefix in XDIST_GROUP_DIRS.items():
        if path.startswith(prefix):
            return group
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("kafka_version") == KAFKA3_VERSION:
        return "kafka3"
    if path == "tests/reliability/test_kafka3.py":
        return "kafka3"
    return path if path in XDIST_GROUP_MODULES else None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = xdist_group_of(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="long mode: run with --run-slow (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
