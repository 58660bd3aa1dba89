"""The chaos run: 20,000 events (and a few hundred bad records among them) through a faulty Inkit,
while the connector is killed with SIGKILL five times and the broker restarts once, under each
AMBIGUOUS_SEND_POLICY.

At the end: first deliveries in per-user order, every bad record dead-lettered exactly once with
its reason, commits at the end of the topic, and
- ``resend``: every valid event delivered at least once, and every duplicate delivery explained
  by a crash: delivered before it and not covered by a commit, and at most the requests in flight
  at that crash (delivered, their sent-ledger record not yet durable);
- ``dead-letter``: no event delivered twice, every valid event delivered or dead-lettered as
  ``ambiguous_send``, every request the simulator read and never answered (drops, hangs) among
  those dead letters, and none of them an event the connector knew was delivered.

CI: ``resend`` at 20,000 events and ``dead-letter`` at 6,000 with three kills (so the second
policy adds about a third to the run, not as much again); `--run-slow` runs both at 100,000
with ten kills. `CHAOS_EVENTS=N` resizes the CI runs and `CHAOS_SEED=N` replays another
schedule. The figures are printed and written as JSON (see ``tests.reliability.write_figures``).
"""

from __future__ import annotations

import os
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.testing.inkit_simulator import InkitSimulator
from connector.testing.kafka_broker import KafkaBroker
from tests.fixtures.kafka import running_broker
from tests.integration.harness import (
    ConnectorProcess,
    Deliveries,
    dlq_headers,
    read_all,
    wait_until,
)
from tests.reliability import Stopwatch, is_covered, write_figures
from tests.reliability.chaos_run import (
    CHAOS_FAULTS,
    CI_DEAD_LETTER_EVENTS,
    CI_EVENTS,
    LONG_EVENTS,
    MAX_IN_FLIGHT,
    PARTITIONS,
    USERS,
    Boundary,
    ChaosRun,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def chaos_broker() -> Iterator[KafkaBroker]:
    """A broker of the chaos run's own: restarting it disturbs no other test."""
    with running_broker(KafkaBroker(), "the chaos run's Kafka broker") as broker:
        yield broker


def ci_size(default: int) -> int:
    return int(os.environ.get("CHAOS_EVENTS", default))


@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    ("events", "kills", "policy"),
    [
        pytest.param(ci_size(CI_EVENTS), 5, "resend", id="ci"),
        pytest.param(ci_size(CI_DEAD_LETTER_EVENTS), 3, "dead-letter", id="ci-dead-letter"),
        pytest.param(LONG_EVENTS, 10, "resend", id="long", marks=pytest.mark.slow),
        pytest.param(LONG_EVENTS, 10, "dead-letter", id="long-dead-letter", marks=pytest.mark.slow),
    ],
)
def test_chaos_kill_9_broker_restart_and_faults_lose_nothing(
    chaos_broker: KafkaBroker,
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    events: int,
    kills: int,
    policy: str,
) -> None:
    seed = int(os.environ.get("CHAOS_SEED", "20261128"))
    rng = random.Random(seed)
    run = ChaosRun(chaos_broker, inkit_simulator, tmp_path, policy)
    clock = Stopwatch()
    run.produce(events, rng)
    produced_s = clock()
    inkit_simulator.set_faults(CHAOS_FAULTS)

    # When to strike: at random delivery counts across the run; one of the middle ones restarts
    # the broker instead of killing the connector.
    marks = sorted(int(rng.uniform(0.08, 0.88) * events) for _ in range(kills + 1))
    broker_index = rng.randrange(1, kills)
    boundaries: list[Boundary] = []
    connector = run.start_connector()
    try:
        for index, mark in enumerate(marks):

            def progressed(mark: int = mark, connector: ConnectorProcess = connector) -> bool:
                connector.assert_running()
                run.page()
                return len(run.delivered) >= mark

            wait_until(
                progressed, 120 + events / 100, f"stuck below {mark}: {connector.log_tail()}"
            )
            time.sleep(rng.uniform(0.0, 0.3))
            if index == broker_index:
                boundary = run.snapshot("broker_restart", clock())
                started = time.monotonic()
                chaos_broker.restart()
                boundary.duration_s = round(time.monotonic() - started, 2)
            else:
                connector.kill()
                time.sleep(0.3)  # the simulator drops the dead process's half-read requests
                boundary = run.snapshot("kill", clock())
                time.sleep(rng.uniform(0.0, 1.0))
                connector = run.start_connector()
            boundaries.append(boundary)

        def finished() -> bool:
            connector.assert_running()
            run.page()
            if policy == "dead-letter":  # ambiguous sends end in the dead-letter topic instead
                return run.all_committed()
            return len(run.delivered) >= events

        wait_until(finished, 300 + events / 50, f"not all finished: {connector.log_tail()}")
        delivered_s = clock()
        wait_until(run.all_committed, 60, f"commits not at the end: {connector.log_tail()}")
        dead = read_all(run.bootstrap, run.dlq, timeout_s=30)
        assert connector.stop() == 0
    finally:
        for process in run.processes:
            if process.proc is not None and process.proc.poll() is None:
                process.kill()
    run.page()

    # -- dead letters: every bad record with its reason; valid events only as ambiguous_send ----
    copies: Counter[tuple[int, int]] = Counter()
    reasons: dict[tuple[int, int], str] = {}
    raw_seen: dict[bytes, tuple[int, int]] = {}
    by_offset = {where: event for event, where in run.valid.items()}
    ambiguous: set[tuple[str, int]] = set()
    for record in dead:
        headers = dlq_headers(record)
        assert headers["inkit.original.topic"] == run.topic
        where = (int(headers["inkit.original.partition"]), int(headers["inkit.original.offset"]))
        copies[where] += 1
        reasons[where] = headers["inkit.error.reason"]
        if where in by_offset:
            assert policy == "dead-letter", f"a valid event was dead-lettered: {where}"
            assert reasons[where] == "ambiguous_send", f"{where}: {reasons[where]}"
            ambiguous.add(by_offset[where])
        elif where not in run.bad_mapped:
            key = record.key()
            assert key in run.bad_raw, f"unexpected dead letter {where} key={key!r}"
            assert raw_seen.setdefault(key, where) == where
    for where, reason in run.bad_mapped.items():
        assert copies[where] >= 1, f"bad record {where} not dead-lettered"
        assert reasons[where] == reason
    for key, reason in run.bad_raw.items():
        assert key in raw_seen, f"bad record {key!r} not dead-lettered"
        assert reasons[raw_seen[key]] == reason
    # Exactly once: a copy acked but not yet committed when the process died is found again by
    # the next owner's scan of the dead-letter topic (dlq_recovery.py) and not written twice.
    dlq_duplicates = {where: n - 1 for where, n in copies.items() if n > 1}
    found_by_scans = sum(
        int(count)
        for process in run.processes
        for line in process.log_text().splitlines()
        if "dead letters already written by a previous owner" in line
        for count in re.findall(r"\]: (\d+)", line)
    )

    # -- valid events: none lost, first deliveries in per-user order ------------------------------
    deliveries = Deliveries.of(run.recorded)
    missing = set(run.valid) - deliveries.unique() - ambiguous
    assert not missing, f"{len(missing)} events lost, e.g. {sorted(missing)[:5]}"
    assert deliveries.first_delivery_order_violations() == []
    assert deliveries.unique() <= set(run.valid)  # no bad record ever reached Inkit

    # -- duplicates: each one after a boundary, of an event delivered and not yet covered then ----
    first_seen: set[tuple[str, int]] = set()
    before_any_boundary = 0
    for recorded in run.recorded:
        event = next(iter(Deliveries.of([recorded]).sequence), None)
        if event is None:
            continue
        if event not in first_seen:
            first_seen.add(event)
            continue
        owner = next((b for b in reversed(boundaries) if b.seq < recorded.seq), None)
        if owner is None:
            before_any_boundary += 1
            continue
        owner.duplicates += 1
        # After a kill, only what the dead process delivered can come again. A broker restart
        # that outlasts the session timeout loses the partitions while the process lives on:
        # what it delivered during the outage (no commit possible) comes again as well.
        delivered_then = owner.kind == "broker_restart" or event in owner.delivered
        if not delivered_then or is_covered(owner.coverage, *run.valid[event]):
            owner.unexplained.append(event)
        if owner.kind == "kill" and event not in run.in_flight(owner):
            owner.beyond_in_flight.append(event)  # the ledger knew it was sent

    # -- ambiguous sends (dead-letter): what the simulator never answered is in the DLQ ----------
    unanswered = set(run.unanswered())
    never_answered_not_dead_lettered = sorted(unanswered - ambiguous)
    # A dead-lettered event Inkit did accept must have been in flight at a crash or restart (its
    # 2xx never became durable): never one the connector knew was delivered.
    accepted = ambiguous & deliveries.unique()
    unexplained_ambiguous = sorted(
        e for e in accepted if not any(e in run.in_flight(b) for b in boundaries)
    )

    kills_figures = [run.boundary_figures(b) for b in boundaries]
    stats = inkit_simulator.stats()
    figures = {
        "seed": seed,
        "policy": policy,
        "events_valid": events,
        "events_bad": len(run.bad_mapped) + len(run.bad_raw),
        "partitions": PARTITIONS,
        "users": USERS,
        "faults": CHAOS_FAULTS.to_dict(),
        "connector": {
            "INKIT_MAX_IN_FLIGHT": MAX_IN_FLIGHT,
            "INKIT_TIMEOUT_SECONDS": 1,
            "COMMIT_INTERVAL_SECONDS": 0.1,
            "MAX_UNCOMMITTED_RECORDS": MAX_IN_FLIGHT,
            "AMBIGUOUS_SEND_POLICY": policy,
        },
        "kills": sum(1 for b in boundaries if b.kind == "kill"),
        "broker_restarts": sum(1 for b in boundaries if b.kind == "broker_restart"),
        "lost": len(missing),
        "order_violations": 0,
        "deliveries": len(deliveries.sequence),
        "duplicates_total": deliveries.duplicates(),
        "boundaries": kills_figures,
        "max_duplicates_per_kill": max(
            (b.duplicates for b in boundaries if b.kind == "kill"), default=0
        ),
        "ambiguous_dead_letters": len(ambiguous),
        "ambiguous_accepted_by_inkit": len(accepted),
        "unanswered_by_simulator": len(unanswered),
        "unanswered_not_dead_lettered": len(never_answered_not_dead_lettered),
        "dlq_records": len(dead),
        "dlq_distinct": len(copies),
        "dlq_duplicates": sum(dlq_duplicates.values()),
        "dlq_copies_found_after_kills": found_by_scans,
        "duplicates_before_any_boundary": before_any_boundary,
        "dlq_reasons": dict(Counter(reasons.values())),
        "committed_at_end": True,
        "simulator": {
            "requests": stats["total"],
            "by_status": stats["by_status"],
            "dropped": stats["dropped"],
            "hung": stats["hung"],
        },
        "seconds": {"produce": produced_s, "deliver_all": delivered_s, "total": clock()},
        "throughput_events_per_s": round(events / max(0.001, delivered_s - produced_s), 1),
    }
    write_figures(request, f"chaos-{policy}-{events}", figures)
    # Asserted after the figures are written, so a failing run still leaves its numbers.
    assert before_any_boundary == 0, "duplicates without any crash or restart"
    assert dlq_duplicates == {}, f"dead letters written more than once: {dlq_duplicates}"
    if policy == "dead-letter":
        assert deliveries.duplicates() == 0, "a letter went twice under AMBIGUOUS_SEND_POLICY"
        assert never_answered_not_dead_lettered == [], "an unanswered request not dead-lettered"
        assert unexplained_ambiguous == [], "dead-lettered although known to be delivered"
        return
    for b in boundaries:
        assert b.unexplained == [], f"{b.kind} at {b.seq}: re-sent although covered by a commit"
        if b.kind == "kill":
            # A kill re-sends only what was in flight then: delivered, its sent-ledger record
            # not yet durable (and so not covered by a commit either), capped by
            # MAX_UNCOMMITTED_RECORDS (= the in-flight window here), even right after the
            # broker was away and no commit could land.
            assert b.beyond_in_flight == [], f"kill at {b.seq}: re-sent what the ledger held"
            assert b.duplicates <= len(run.in_flight(b))
            assert b.duplicates <= len(run.uncommitted(b))
            assert b.duplicates <= MAX_IN_FLIGHT
