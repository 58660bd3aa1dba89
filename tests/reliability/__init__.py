"""Reliability suite: chaos, group churn, hostile input, secrets and SASL, each against the real
broker and the Inkit simulator with `inkit-connector run` as a real process.

The few helpers every file of the suite needs live here (the end-to-end helpers they build on
are in ``tests/integration/harness.py``): reading the group's commits *with* their metadata,
parsing /metrics, and writing a run's figures where RELIABILITY.md takes them from.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from connector.delivery.offsets import decode_metadata

FIGURES_ENV = "RELIABILITY_FIGURES_DIR"


def covered_offsets(
    bootstrap: str, group: str, topic: str, partitions: int, **client: Any
) -> dict[int, tuple[int, set[int]]]:
    """Per partition: the committed offset and the finished offsets above it (commit metadata).

    A record is covered (never re-sent by a restart) when its offset is below the committed one
    or in that set.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, **client})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        consumer.close()
    return {
        tp.partition: (tp.offset, set(decode_metadata(tp.offset, tp.metadata).done)) for tp in tps
    }


def is_covered(coverage: Mapping[int, tuple[int, set[int]]], partition: int, offset: int) -> bool:
    committed, done = coverage.get(partition, (-1, set()))
    return offset < committed or offset in done


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of ``name`` in a Prometheus text exposition: (labels, value)."""
    samples = []
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        base, _, rest = series.partition("{")
        if base != name:
            continue
        labels = {}
        for pair in filter(None, rest.rstrip("}").split('",')):
            key, _, raw = pair.partition("=")
            labels[key.strip(",")] = raw.strip('"')
        samples.append((labels, float(value)))
    return samples


def write_figures(request: pytest.FixtureRequest, name: str, figures: Mapping[str, Any]) -> Path:
    """Write a run's figures as JSON under the session's tmp dir (and $RELIABILITY_FIGURES_DIR
    when set, for CI artifacts), print them, and return the path."""
    text = json.dumps(figures, indent=2, sort_keys=True, default=str)
    base = request.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    targets = [Path(base) / "reliability-figures"]
    if os.environ.get(FIGURES_ENV):
        targets.append(Path(os.environ[FIGURES_ENV]))
    path = targets[0] / f"{name}.json"
    for directory in targets:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{name}.json").write_text(text + "\n")
    print(f"\n=== reliability figures: {name} ({path}) ===\n{text}")
    return path


class Stopwatch:
    """Seconds since construction, for the figures."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start = clock()

    def __call__(self) -> float:
        return round(self._clock() - self._start, 2)
