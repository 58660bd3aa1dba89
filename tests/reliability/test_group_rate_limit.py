"""One account-wide rate limit shared by every replica (issue #19), measured where Inkit would
measure it: at the simulator, over 10 s windows, with three `inkit-connector run` processes on
the real broker.

- group scope: INKIT_RATE_LIMIT=100 for the whole group holds (<= 105/s in every window, >= 85/s
  in every window from 10 s after a membership change), while one member stops and another
  starts; pod scope, in the same test just before (one fleet at a time: both at once starve each
  other on two cores), sends about 3 x 100/s.
- adaptive mode against a simulator that answers 429 above 120/s: after the first 30 s, fewer than
  5 % of requests are refused and at least 80 % of 120/s get through.

The default runs are compact (one stop and one start at the same moment; a short measurement);
the full-length ones (stop, then start, 30 s phases; a 60 s adaptive measurement) run with
--run-slow.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from connector.testing.inkit_simulator import Faults, InkitSimulator
from tests.fixtures.simulator import SIMULATOR_API_KEY
from tests.integration.harness import (
    ConnectorProcess,
    connector_env,
    identify,
    produce,
    wait_until,
)
from tests.reliability import Stopwatch, write_figures

pytestmark = pytest.mark.integration

PARTITIONS = 6  # three members take two each: equal shares
# The figures: INKIT_RATE_LIMIT=100, every 10 s window at most 105/s and at least 85/s.
# RATE_LIMIT_TEST_LIMIT scales the run down (bounds scale with it) on a machine too loaded for
# six connector processes at 100/s each; CI runs the figures.
LIMIT = float(os.environ.get("RATE_LIMIT_TEST_LIMIT", "100"))
WINDOW_S = 10.0
SETTLE_S = 10.0  # the bound: back within limits at most 10 s after a member change
UPPER = 1.05 * LIMIT
LOWER = 0.85 * LIMIT


@dataclass(frozen=True)
class Timing:
    steady_s: float  # measured before the first membership change
    after_change_s: float  # measured after each change (the first SETTLE_S excluded from LOWER)
    separate_changes: bool  # stop one, then later start one (else both at the same moment)
    adaptive_warmup_s: float
    adaptive_measure_s: float


COMPACT = Timing(
    steady_s=10, after_change_s=20, separate_changes=False, adaptive_warmup_s=30,
    adaptive_measure_s=10,
)  # fmt: skip
FULL = Timing(
    steady_s=30, after_change_s=30, separate_changes=True, adaptive_warmup_s=30,
    adaptive_measure_s=60,
)  # fmt: skip


@pytest.fixture(
    params=[COMPACT, pytest.param(FULL, marks=pytest.mark.slow)], ids=["compact", "full"]
)
def timing(request: pytest.FixtureRequest) -> Timing:
    return request.param  # type: ignore[no-any-return]


class Fleet:
    """A topic with a backlog, a consumer group of connector processes and its simulator."""

    def __init__(
        self,
        name: str,
        bootstrap: str,
        topic_factory: Callable[..., str],
        simulator: InkitSimulator,
        tmp_path: Path,
        **env: str,
    ) -> None:
        self.name = name
        self.bootstrap = bootstrap
        self.topic = topic_factory(partitions=PARTITIONS)
        self.dlq = topic_factory(partitions=1)
        self.group = f"g-{uuid.uuid4().hex[:8]}"
        self.simulator = simulator
        self.tmp_path = tmp_path
        self.env = env
        self.processes: list[ConnectorProcess] = []

    def backlog(self, events: int) -> multiprocessing.process.BaseProcess:
        """Start producing ``events`` in a child process: encoding them here would hold this
        process's GIL for seconds, stall the simulators that run in it, and bunch their arrival
        times into the first windows measured."""
        child = multiprocessing.get_context("spawn").Process(
            target=produce_backlog, args=(self.bootstrap, self.topic, self.name, events)
        )
        child.start()
        return child

    def start(self) -> ConnectorProcess:
        env = connector_env(
            self.bootstrap, self.topic, self.dlq, self.simulator, self.group,
            # Ample for 100/s on loopback, and it bounds a measuring artefact: requests queued
            # while the simulator's thread waits for the CPU are stamped when it reads them,
            # all at once, in the next window.
            INKIT_MAX_IN_FLIGHT="16",
            # A drain (stop, revoke) sends what is buffered at this member's share of the rate:
            # keep that below DRAIN_TIMEOUT_SECONDS' worth (5 s of a third of the limit), or the
            # drain times out and the partition's next owner waits out the handoff unused.
            MAX_BUFFERED_RECORDS=str(int(float(self.env["INKIT_RATE_LIMIT"]) / 3 * 5)),
            **self.env,
        )  # fmt: skip
        name = f"{self.name}-{len(self.processes)}"
        process = ConnectorProcess(env, self.tmp_path, name=name).start()
        self.processes.append(process)
        return process

    def running(self) -> list[ConnectorProcess]:
        return [p for p in self.processes if p.proc is not None and p.proc.poll() is None]

    def shares(self) -> list[float]:
        return [p.metric("inkit_connector_rate_limit_share") for p in self.running()]

    def settled(self, members: int) -> bool:
        """Every running member has read its share and the shares add up to the whole group."""
        shares = self.shares()
        return len(shares) == members and all(s > 0 for s in shares) and abs(sum(shares) - 1) < 1e-6

    def all_assigned(self, members: int) -> bool:
        assigned = [p.metric("inkit_connector_assigned_partitions") for p in self.running()]
        return len(assigned) == members and all(a > 0 for a in assigned)

    def arrivals(self) -> list[float]:
        return sorted(r.arrival for r in self.simulator.requests())

    def kill_all(self) -> None:
        """End every process at once (when how they stop is not what the test is about)."""
        for process in self.running():
            process.kill()

    def stop_all(self) -> None:
        for process in self.running():
            process.signal(15)
        for process in self.processes:
            if process.proc is not None and process.proc.poll() is None:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:  # a stuck process must not outlive the test
                    process.kill()


def produce_backlog(bootstrap: str, topic: str, seed: str, events: int) -> None:
    rng = random.Random(seed)
    users = [f"user-{i}" for i in range(600)]
    produce(bootstrap, topic, [identify(rng.choice(users), n) for n in range(events)])


def await_backlog(*children: multiprocessing.process.BaseProcess) -> None:
    for child in children:
        child.join(120)
        assert child.exitcode == 0, f"producing the backlog failed ({child.exitcode})"


def window_rates(arrivals: list[float], start: float, end: float) -> list[tuple[float, float]]:
    """(window start, requests/s) of every WINDOW_S window inside [start, end], in 1 s steps."""
    rates = []
    t = start
    while t + WINDOW_S <= end + 1e-9:
        n = sum(1 for a in arrivals if t <= a < t + WINDOW_S)
        rates.append((round(t - start, 1), n / WINDOW_S))
        t += 1.0
    return rates


@pytest.fixture
def fleets(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
) -> Iterator[tuple[Fleet, Fleet]]:
    with InkitSimulator(api_key=SIMULATOR_API_KEY, seed=1) as pod_simulator:
        limit = {"INKIT_RATE_LIMIT": f"{LIMIT:g}"}
        group = Fleet(
            "group", kafka_bootstrap, topic_factory, inkit_simulator, tmp_path,
            INKIT_RATE_LIMIT_SCOPE="group", **limit,
        )  # fmt: skip
        pod = Fleet(
            "pod", kafka_bootstrap, topic_factory, pod_simulator, tmp_path,
            INKIT_RATE_LIMIT_SCOPE="pod", **limit,
        )  # fmt: skip
        try:
            yield group, pod
        finally:
            for fleet in (group, pod):
                fleet.stop_all()


@pytest.mark.timeout(600)
def test_group_scope_holds_one_limit_for_the_group_and_pod_scope_multiplies_it(
    fleets: tuple[Fleet, Fleet], timing: Timing, request: pytest.FixtureRequest
) -> None:
    group, pod = fleets
    clock = Stopwatch()
    members = [group.start() for _ in range(3)] + [pod.start() for _ in range(3)]
    for member in members:
        member.wait_ready(90)
    wait_until(lambda: group.settled(3), 60, "group shares never settled")
    wait_until(lambda: pod.all_assigned(3), 60, "pod-scope members never all got partitions")
    started_s = clock()
    # Pod scope first, then group scope, each with its backlog produced once every member holds
    # its partitions (so that however long the start took, it outlasts the run on every
    # partition) and measured once the backlog is all in Kafka (so that it measures the
    # connector, not how fast this test produces). One after the other, not at once: the two
    # fleets at 400 req/s in all (and, under xdist, another test) starve each other on two
    # cores, and a CI run measured 72/s for a group that holds 100/s on its own. While the pod
    # fleet runs, the group's members are idle: they have no records yet.
    await_backlog(pod.backlog(int(3 * LIMIT * (WINDOW_S + 15))))
    t0 = time.time() + 1.0
    wait_until(lambda: time.time() >= t0 + WINDOW_S, WINDOW_S + 5)
    pod_rate = window_rates(pod.arrivals(), t0, t0 + WINDOW_S)[0][1]
    for process in pod.running():
        process.signal(15)
    wait_until(lambda: not pod.running(), 60, "pod-scope members did not stop")

    group_t0 = time.time()
    run_s = timing.steady_s + (2 if timing.separate_changes else 1) * timing.after_change_s
    await_backlog(group.backlog(int(LIMIT * (run_s + 20) * 1.3)))
    backlog_s = time.time() - group_t0
    steady_from = time.time() + 1.0

    # Group scope: steady, then membership changes.
    wait_until(lambda: time.time() >= steady_from + timing.steady_s, timing.steady_s + 5)
    changes: list[tuple[str, float]] = []
    group.running()[0].signal(15)  # a graceful stop: drain, commit, leave
    changes.append(("stop", time.time()))
    if timing.separate_changes:
        wait_until(lambda: time.time() >= changes[-1][1] + timing.after_change_s, 60)
        wait_until(lambda: group.settled(2), 30, "shares never settled on two members")
    group.start().wait_ready(90)
    # "Started" counts from when the new process is up (/readyz), not from its fork: a loaded
    # machine can take longer than the 10 s bound just to import and connect.
    changes.append(("start", time.time()))
    end = changes[-1][1] + timing.after_change_s
    wait_until(lambda: time.time() >= end, timing.after_change_s + 60)
    settled_3 = group.settled(3)
    arrivals = group.arrivals()
    group.stop_all()

    every = window_rates(arrivals, group_t0, end)  # the ceiling: every window with records
    steady = window_rates(arrivals, steady_from, changes[0][1])
    after = [window_rates(arrivals, at + SETTLE_S, nxt) for (_, at), nxt in zip(
        changes, [c[1] for c in changes[1:]] + [end], strict=True
    )]  # fmt: skip
    held = steady + [w for part in after for w in part]
    write_figures(
        request,
        f"group-rate-limit-{request.node.callspec.id}",
        {
            "limit_per_s": LIMIT,
            "pod_scope_window_per_s": pod_rate,
            "group_scope_max_window_per_s": max(r for _, r in every),
            "group_scope_min_window_per_s_outside_transitions": min(r for _, r in held),
            "group_scope_min_window_per_s_any": min(r for _, r in every),
            "windows_checked_upper": len(every),
            "windows_checked_lower": len(held),
            "changes_s_after_steady": [(kind, round(at - steady_from, 1)) for kind, at in changes],
            "members_ready_and_assigned_s": started_s,
            "group_backlog_produced_in_s": round(backlog_s, 2),
            "seconds": clock(),
        },
    )
    assert every, "no window measured"
    assert all(r <= UPPER for _, r in every), f"group above {UPPER}/s: {every}"
    assert all(r >= LOWER for _, r in held), f"group below {LOWER}/s outside transitions: {held}"
    assert settled_3, "the new member did not take its share"
    # Pod scope: the per-pod limits add up, past the group's bound (3 x 100/s on an idle machine).
    # Asserted only as "above what group scope allows": six processes at 400 req/s in all are
    # CPU-bound on a loaded 2-core machine (146-250/s measured there); the figures keep the value.
    assert UPPER < pod_rate <= 3 * UPPER, f"pod scope: {pod_rate}/s, expected about 300/s"


HIDDEN_LIMIT = 120.0  # the simulator's limit, unknown to the connector
CEILING = 300.0  # INKIT_RATE_LIMIT in adaptive mode: where it starts and what it never exceeds


@pytest.mark.timeout(600)
def test_adaptive_mode_finds_an_unknown_limit(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
    timing: Timing,
    request: pytest.FixtureRequest,
) -> None:
    clock = Stopwatch()
    inkit_simulator.set_faults(Faults(max_rate_per_s=HIDDEN_LIMIT, retry_after_s=1))
    fleet = Fleet(
        "adaptive", kafka_bootstrap, topic_factory, inkit_simulator, tmp_path,
        INKIT_RATE_LIMIT=f"{CEILING:g}", INKIT_RATE_LIMIT_SCOPE="group",
        INKIT_RATE_LIMIT_ADAPTIVE="true",
    )  # fmt: skip
    run_s = timing.adaptive_warmup_s + timing.adaptive_measure_s + 15
    await_backlog(fleet.backlog(int(HIDDEN_LIMIT * run_s * 1.3)))
    backlog_s = clock()
    try:
        for _ in range(3):
            fleet.start()
        wait_until(lambda: inkit_simulator.stats()["total"] > 0, 60, fleet.processes[0].log_tail())
        start = time.monotonic()  # the first request reached "Inkit"
        first_request_s = clock()
        measure_from = start + timing.adaptive_warmup_s
        wait_until(lambda: time.monotonic() >= measure_from, timing.adaptive_warmup_s + 5)
        before = inkit_simulator.stats()
        measure_to = measure_from + timing.adaptive_measure_s
        wait_until(lambda: time.monotonic() >= measure_to, timing.adaptive_measure_s + 5)
        after = inkit_simulator.stats()
        group_rates = [p.metric("inkit_connector_rate_limit_group_requests_per_second")
                       for p in fleet.running()]  # fmt: skip
        decreases = sum(p.metric("inkit_connector_rate_limit_decreases_total")
                        for p in fleet.running())  # fmt: skip
    finally:
        fleet.kill_all()  # a graceful drain of the backlog at ~40/s each would add ~15 s
    requests = after["total"] - before["total"]
    refused = after["by_status"].get(429, 0) - before["by_status"].get(429, 0)
    accepted_per_s = (after["accepted"] - before["accepted"]) / timing.adaptive_measure_s
    write_figures(
        request,
        f"adaptive-rate-limit-{request.node.callspec.id}",
        {
            "hidden_limit_per_s": HIDDEN_LIMIT,
            "ceiling_per_s": CEILING,
            "measured_after_s": timing.adaptive_warmup_s,
            "measured_for_s": timing.adaptive_measure_s,
            "requests": requests,
            "refused_429": refused,
            "refused_fraction": round(refused / max(1, requests), 4),
            "accepted_per_s": accepted_per_s,
            "first_30s_429": before["by_status"].get(429, 0),
            "members_group_rate_at_end": [round(r, 1) for r in group_rates],
            "step_downs_total": decreases,
            "backlog_produced_s": backlog_s,
            "first_request_s": first_request_s,
            "seconds": clock(),
        },
    )
    assert requests > 0
    assert refused / requests < 0.05, f"{refused} of {requests} requests refused"
    assert accepted_per_s >= 0.8 * HIDDEN_LIMIT, f"only {accepted_per_s:.1f}/s got through"
