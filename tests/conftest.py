"""Shared test configuration. Fixtures live in tests/fixtures/, one module per real service."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.simulator",
    "tests.fixtures.prometheus",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow", action="store_true", default=False, help="also run the long soak/chaos modes"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="long mode: run with --run-slow (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
