"""Sent-ledger rebuild: how long a member takes to read N ledger records at start-up, and the
memory the index keeps per million remembered events.

    .venv/bin/python bench/ledger_bench.py --records 1000000

Starts the project's broker (or uses --bootstrap), produces N ledger records (keys shaped like
analytics.js messageIds) to a compacted topic, then times ``SentLedger.load`` in this process and
measures the index: its arrays' bytes after a merge, and the Python heap the load allocated at its
peak (tracemalloc)."""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import json
import os
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connector.kafka.ledger import SentLedger
from connector.observability.metrics import Metrics
from connector.testing.kafka_broker import KafkaBroker
from connector.testing.topics import wait_for_topic


def produce_ledger(bootstrap: str, topic: str, n: int) -> float:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 1_000_000,
            "compression.type": "lz4",
        }
    )
    value = json.dumps({"sent_at_ms": 0, "group": "bench", "topic": "t", "partition": 0}).encode()
    started = time.monotonic()
    for i in range(n):
        key = f"ajs-next-{1714557600000 + i}-{uuid.UUID(int=i * 2654435761 % (1 << 128))}"
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10000 == 0:
            producer.poll(0)
    producer.flush(120)
    return time.monotonic() - started


def _load_baseline(path: str) -> Any:
    """SentLedger of another version of connector/kafka/ledger.py, imported from a file."""
    spec = importlib.util.spec_from_file_location("baseline_ledger", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SentLedger


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=2, help="timed loads (the best is kept)")
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument(
        "--profile", default=None, help="write a cProfile of one timed load to this file"
    )
    parser.add_argument(
        "--baseline",
        default=None,
        help="another ledger.py (e.g. `git show REF:connector/kafka/ledger.py > old.py`) whose "
        "SentLedger.load is timed in turn with this one's, on the same topic, same process",
    )
    args = parser.parse_args(argv)
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = KafkaBroker()
        broker.start()
        bootstrap = broker.bootstrap_servers
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topic = f"bench-ledger-{uuid.uuid4().hex[:8]}"
        admin.create_topics(
            [NewTopic(topic, args.partitions, -1, config={"cleanup.policy": "compact"})]
        )[topic].result(30)
        wait_for_topic(admin, topic, args.partitions, 30)
        produce_s = produce_ledger(bootstrap, topic, args.records)

        def factory() -> Any:
            return Consumer(
                {
                    "bootstrap.servers": bootstrap,
                    "group.id": "ledger-bench",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                }
            )

        def new_ledger() -> SentLedger:
            return SentLedger(
                producer=None,
                consumer_factory=factory,
                topic=topic,
                window_s=720 * 3600,
                metrics=Metrics(CollectorRegistry()),
                group_id="bench",
            )

        baseline_cls = _load_baseline(args.baseline) if args.baseline else None
        # Timed without tracemalloc: it hooks every allocation and slowed the measured rebuild
        # (the first figures in RESULTS.md were taken with it on). The heap is a second load.
        # With --baseline, the two versions alternate, so both see the same machine load.
        loads: list[float] = []
        baseline_loads: list[float] = []
        compactions: list[float] = []
        for _ in range(args.repeat):
            ledger = new_ledger()
            loads.append(ledger.load())
            # The follower thread folds the rebuilt dict into sorted arrays in the background
            # (lookups work meanwhile); waiting on the same lock times what is left of it.
            started = time.monotonic()
            ledger._index.merge()
            compactions.append(time.monotonic() - started)
            ledger.close()
            if baseline_cls is not None:
                old = baseline_cls(
                    producer=None,
                    consumer_factory=factory,
                    topic=topic,
                    window_s=720 * 3600,
                    metrics=Metrics(CollectorRegistry()),
                    group_id="bench",
                )
                baseline_loads.append(old.load())
                old.close()
        if args.profile:
            ledger = new_ledger()
            profiler = cProfile.Profile()
            profiler.enable()
            ledger.load()
            profiler.disable()
            profiler.dump_stats(args.profile)
            ledger.close()
        ledger = new_ledger()
        tracemalloc.start()
        traced_s = ledger.load()
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        ledger.close()
        load_s = min(loads)
        index = ledger._index
        index.merge()
        keys, times = index._sorted
        kept = keys.itemsize * len(keys) + times.itemsize * len(times)
        per_million = kept / max(1, len(index)) * 1_000_000
        print(
            json.dumps(
                {
                    "records": args.records,
                    "remembered": len(index),
                    "produce_s": round(produce_s, 2),
                    "rebuild_s": round(load_s, 2),
                    "rebuild_runs_s": [round(x, 2) for x in loads],
                    "background_compaction_s": [round(x, 2) for x in compactions],
                    "baseline_rebuild_runs_s": [round(x, 2) for x in baseline_loads],
                    "load_average": [round(x, 1) for x in os.getloadavg()],
                    "rebuild_under_tracemalloc_s": round(traced_s, 2),
                    "index_mib_per_million": round(per_million / 2**20, 1),
                    "load_peak_heap_mib": round(peak / 2**20, 1),
                },
                indent=2,
            )
        )
    finally:
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
