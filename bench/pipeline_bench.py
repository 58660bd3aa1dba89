"""The pipeline benchmark: one command, every pipeline, the same topic, the same simulator.

    .venv/bin/python bench/pipeline_bench.py                 # full: 100k events, 3 runs, 0/50 ms
    .venv/bin/python bench/pipeline_bench.py --quick         # smoke run: 5k events, 1 run

It starts the project's Kafka broker and the Inkit simulator (in its own process), produces the
topic once (12 partitions, Avro Identify events keyed by userId, each carrying the traits
``test_user``/``test_seq``), then for every run and simulator latency starts each pipeline as its
own process with its own consumer group: the naive loop, the quixstreams application,
inkit-connector with default and with tuned settings, and the floor (asyncio + httpx, no Kafka).

Per pipeline run it measures, from outside the process:
- throughput: events accepted by the simulator per second, between the first and the last arrival
  before the run ended (startup and group join excluded);
- CPU per 1,000 events: user+sys CPU seconds of the pipeline process over that same window
  (sampled from /proc), divided by the events delivered in it;
- peak RSS: the process's high-water mark (``ru_maxrss`` of wait4, i.e. VmHWM);
- end-to-end latency: simulator arrival time minus max(the record's Kafka timestamp, the moment the
  pipeline process was started). The topic is produced before the pipeline starts, so this is the
  backlog-drain latency of each event: how long after the pipeline could first see it, it reached
  Inkit (it includes startup and group join; p50 is about half the drain time);
- from the simulator's record: delivered unique events, loss (expected - delivered; only for runs
  that finished, not for time-boxed ones), duplicates and per-user order violations of first
  deliveries.
A pipeline that has not delivered everything within its time budget is stopped and its numbers
come from what it delivered (marked "budget").

Results go to ``--out`` (JSON, every run) and a Markdown summary (medians) is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import stages  # bench/stages.py: this script's directory is first on sys.path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PYTHON = sys.executable
API_KEY = "bench-api-key"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.2
STALL_S = 60.0  # no progress for this long: give up on the run

# Tuned connector settings: more in flight, fewer commits, and a bounded librdkafka prefetch.
# librdkafka's defaults (queued.min.messages 100,000 per partition, up to 64 MB queued) would
# prefetch the whole topic into memory; MAX_BUFFERED_RECORDS stays at its default (8 x 256).
TUNED_ENV = {
    "INKIT_MAX_IN_FLIGHT": "256",
    "COMMIT_INTERVAL_SECONDS": "5",
    "KAFKA_CONFIG_QUEUED_MIN_MESSAGES": "1000",
    "KAFKA_CONFIG_QUEUED_MAX_MESSAGES_KBYTES": "8192",
}


# -- the topic -------------------------------------------------------------------------------
def make_events(n: int, users: int, seed: int = 42) -> list[dict[str, Any]]:
    """``n`` Identify events over ``users`` users in a random interleaving; per user, test_seq
    counts 0, 1, 2...; realistic contact traits plus two custom ones."""
    rng = random.Random(seed)
    next_seq = [0] * users
    events = []
    for _ in range(n):
        u = rng.randrange(users)
        seq = next_seq[u]
        next_seq[u] += 1
        user = f"user-{u:05d}"
        events.append(
            {
                "type": "identify",
                "userId": user,
                "messageId": f"{user}-{seq}",
                "timestamp": "2026-11-28T12:00:00.000Z",
                "traits": {
                    "template_id": "tmpl_bench",
                    "first_name": "Ada",
                    "last_name": f"Lovelace {u}",
                    "email": f"{user}@example.com",
                    "address_line_1": f"{u} Main St",
                    "address_city": "Springfield",
                    "address_state": "IL",
                    "address_zip": "62701",
                    "address_country": "US",
                    "plan": "pro",
                    "score": seq * 3,
                    "test_user": user,
                    "test_seq": seq,
                },
            }
        )
    return events


def produce_topic(
    bootstrap: str, topic: str, partitions: int, events: list[dict[str, Any]], bodies_path: Path
) -> dict[tuple[str, int], int]:
    """Create the topic and its DLQ, produce the events, write the bodies file for the floor;
    return each event's Kafka timestamp (ms) by (user, seq)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from connector.events.decoding import AvroDecoder
    from connector.events.encoding import build_encoder
    from connector.events.mapping import Mapper
    from connector.models import Skip
    from connector.settings import Settings
    from connector.testing.topics import wait_for_topic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, partitions, 1), NewTopic(f"{topic}.dlq", 1, 1)], operation_timeout=30
    )
    for future in futures.values():
        future.result(30)
    encoder = build_encoder("avro")
    decoder = AvroDecoder()
    mapper = Mapper(
        Settings(
            bootstrap_servers=bootstrap, topic=topic, inkit_api_key=API_KEY, value_format="avro"
        )
    )
    # Idempotence keeps each partition in produce order even when librdkafka retries (the first
    # batches to a topic created a moment ago fail with UNKNOWN_TOPIC_OR_PART and are retried;
    # without it, later batches overtake them and per-user order is broken before any pipeline
    # reads the topic).
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True}
    )
    wait_for_topic(producer, topic, partitions)
    timestamps: dict[tuple[str, int], int] = {}
    errors: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    with bodies_path.open("w", encoding="utf-8") as bodies:
        for event in events:
            value = encoder.encode(event)
            request = mapper.map(decoder.decode(value))
            assert not isinstance(request, Skip)
            bodies.write(json.dumps(request.body, separators=(",", ":")) + "\n")
            ts_ms = int(time.time() * 1000)
            traits = event["traits"]
            timestamps[(traits["test_user"], traits["test_seq"])] = ts_ms
            while True:
                try:
                    producer.produce(
                        topic,
                        key=event["userId"].encode(),
                        value=value,
                        timestamp=ts_ms,
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
    producer.flush(60)
    if errors:
        raise RuntimeError(f"produce failed: {errors[:3]}")
    return timestamps


# -- processes -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """user+sys CPU of a live process (all its threads), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def librdkafka_cpu_seconds(pid: int) -> float:
    """user+sys CPU of a live process's librdkafka threads (named ``rdk:*``: fetch, broker I/O,
    the main timer thread), which no Python profiler sees."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            comm, fields = stat.read_text().split("(", 1)[1].rsplit(")", 1)
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        if comm.startswith("rdk:"):
            parts = fields.split()
            total += int(parts[11]) + int(parts[12])
    return total / CLK_TCK


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM of a live process. (wait4's ru_maxrss is no use here: after fork + exec it starts
    from the parent's high-water mark, and this parent holds the whole topic in memory.)"""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


@dataclass
class Variant:
    name: str  # naive, quix, connector-default, connector-tuned, floor-64, floor-256
    kind: str  # naive, quix, connector, floor
    concurrency: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    pythonpath: str = ""  # run the connector from this copy (``--before``), not the default


def command_for(v: Variant, ctx: dict[str, Any], group: str) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (v.pythonpath or ctx.get("pythonpath", ""), env.get("PYTHONPATH", "")) if p
    )
    common = ["--bootstrap", ctx["bootstrap"], "--topic", ctx["topic"], "--group", group]
    url, key = ctx["webhook_url"], API_KEY
    if v.kind == "naive":
        cmd = [PYTHON, str(BENCH_DIR / "naive_loop.py"), *common, "--url", url, "--api-key", key]
    elif v.kind == "quix":
        python = ctx.get("quix_python") or PYTHON
        cmd = [python, str(BENCH_DIR / "quix_pipeline.py"), *common, "--url", url]
        cmd += ["--api-key", key, "--concurrency", str(v.concurrency or 16)]
    elif v.kind == "floor":
        cmd = [PYTHON, str(BENCH_DIR / "floor.py"), "--bodies", str(ctx["bodies"])]
        cmd += ["--url", url, "--concurrency", str(v.concurrency or 64)]
        cmd += ["--stack", v.env.get("stack", "httpx")]
    else:
        cmd = [PYTHON, "-m", "connector", "run"]
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": ctx["bootstrap"],
                "KAFKA_TOPIC": ctx["topic"],
                "KAFKA_DLQ_TOPIC": f"{ctx['topic']}.dlq",
                "KAFKA_GROUP_ID": group,
                # Each run its own sent-ledger: the variants read the same events, and a shared
                # ledger would skip every event the previous variant delivered.
                "KAFKA_LEDGER_TOPIC": f"{ctx['topic']}.sent.{group}",
                "KAFKA_VALUE_FORMAT": "avro",
                "INKIT_API_URL": url,
                "INKIT_API_KEY": key,
                "METRICS_HOST": "127.0.0.1",
                "METRICS_PORT": str(free_port()),
            }
        )
        env.update(v.env)
    return cmd, env


def start_profiler(
    pid: int, out: Path, duration_s: int = 15, *, gil: bool = False
) -> subprocess.Popen[bytes]:
    """py-spy on a running pipeline (every thread, on-CPU samples only), collapsed stacks.
    ``gil``: only the thread holding the GIL is sampled (py-spy --gil), so a thread waiting in C
    (consume(), poll(), a GIL hand-over) is never counted as running, whatever py-spy's idle
    heuristic says; work done in C without the GIL is then shared out with the rest."""
    py_spy = str(Path(PYTHON).parent / "py-spy")
    cmd = [py_spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw"]
    cmd += ["--gil"] if gil else []
    cmd += ["--duration", str(duration_s), "--nonblocking", "-o", str(out)]
    with out.with_suffix(".log").open("wb") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def read_record(sim: Any) -> list[Any]:
    """The simulator's whole record, paged."""
    out: list[Any] = []
    since = 0
    while True:
        page = sim.requests(since=since, limit=20000)
        if not page:
            return out
        out.extend(page)
        since = page[-1].seq


def run_one(
    v: Variant,
    ctx: dict[str, Any],
    sim: Any,
    expected: int,
    budget_s: float,
    log_dir: Path,
    tag: str,
) -> dict[str, Any]:
    """One pipeline run; whatever happens, its process (own session) does not outlive it."""
    started: list[int] = []
    try:
        return _run_one(v, ctx, sim, expected, budget_s, log_dir, tag, started)
    except BaseException:
        for pid in started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        raise


def _run_one(
    v: Variant,
    ctx: dict[str, Any],
    sim: Any,
    expected: int,
    budget_s: float,
    log_dir: Path,
    tag: str,
    started: list[int],
) -> dict[str, Any]:
    sim.reset()
    group = f"bench-{v.name}-{tag}-{time.monotonic_ns()}"
    cmd, env = command_for(v, ctx, group)
    log_path = log_dir / f"{v.name}-{tag}.log"
    with log_path.open("wb") as log:
        t_spawn = time.time()
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # `python -m` puts the working directory first on sys.path: run experiments from the
            # scratch copy's directory so that its `connector` package is the one imported.
            cwd=v.pythonpath or ctx.get("pythonpath") or REPO,
            start_new_session=True,
        )
    pid = proc.pid
    started.append(pid)
    profilers: list[subprocess.Popen[bytes]] = []
    peak_rss = 0.0
    first: tuple[float, int, float] | None = None  # (wall, accepted, cpu)
    last: tuple[float, int, float] | None = None
    rdk_first = rdk_last = 0.0  # librdkafka threads' CPU at the first and the last sample
    done_reason = "budget"
    last_progress = (time.time(), 0)
    exited_rusage = None
    while True:
        time.sleep(SAMPLE_S)
        now = time.time()
        accepted = int(sim.stats()["accepted"])
        wpid, status, rusage = os.wait4(pid, os.WNOHANG)
        cpu = None if wpid else cpu_seconds(pid)
        hwm = None if wpid else peak_rss_mb(pid)
        if hwm is not None:
            peak_rss = max(peak_rss, hwm)
        if cpu is None:  # the process ended (the floor exits when it is done)
            if not wpid:
                _, status, rusage = os.wait4(pid, 0)
            exited_rusage = rusage
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu = exited_rusage.ru_utime + exited_rusage.ru_stime
            last = (now, accepted, cpu)
            done_reason = "complete" if accepted >= expected else "exited"
            break
        if accepted > 0 and first is None:
            first = (now, accepted, cpu)
            rdk_first = librdkafka_cpu_seconds(pid)
            if ctx.get("profile") and v.kind in ("connector", "floor"):
                out = Path(f"{ctx['profile']}-{v.name}-{tag}.txt")
                profilers.append(start_profiler(pid, out, gil=ctx.get("profile_gil", False)))
        last = (now, accepted, cpu)
        rdk_last = librdkafka_cpu_seconds(pid)
        if accepted > last_progress[1]:
            last_progress = (now, accepted)
        if accepted >= expected:
            done_reason = "complete"
            break
        if now - t_spawn > budget_s:
            break
        if now - last_progress[0] > STALL_S:
            done_reason = "stalled"
            break
    t_done = time.time()
    hwm = peak_rss_mb(pid)  # the last look before SIGTERM (the drain adds nothing to the peak)
    if hwm is not None:
        peak_rss = max(peak_rss, hwm)
    if exited_rusage is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.time() + 40
        while time.time() < deadline:
            wpid, status, exited_rusage = os.wait4(pid, os.WNOHANG)
            if wpid:
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
            _, status, exited_rusage = os.wait4(pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    for profiler in profilers:
        profiler.wait(60)
    records = read_record(sim)
    result = analyse(
        v,
        records,
        ctx["timestamps"],
        expected,
        t_spawn,
        t_done,
        first,
        last,
        exited_rusage,
        peak_rss,
        done_reason,
        proc.returncode,
    )
    if first is not None and last is not None and last[1] > first[1]:
        # CPU s per 1k events = CPU ms per event
        result["librdkafka_cpu_ms_per_event"] = (rdk_last - rdk_first) / (
            (last[1] - first[1]) / 1000.0
        )
    if profilers and result["cpu_s_per_1k"] is not None:
        profile = Path(f"{ctx['profile']}-{v.name}-{tag}.txt")
        if profile.exists():
            # py-spy sees the Python threads: their share is the process's CPU less
            # librdkafka's own threads, which are a stage of their own.
            rdk = result.get("librdkafka_cpu_ms_per_event", 0.0)
            per = stages.stage_ms_per_event(stages.parse(profile), result["cpu_s_per_1k"] - rdk)
            result["stages_ms_per_event"] = {"librdkafka": rdk, **per}
            result["profile"] = str(profile)
    return result


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def analyse(
    v: Variant,
    records: list[Any],
    timestamps: dict[tuple[str, int], int],
    expected: int,
    t_spawn: float,
    t_done: float,
    first: tuple[float, int, float] | None,
    last: tuple[float, int, float] | None,
    rusage: Any,
    peak_rss: float,
    done_reason: str,
    returncode: int | None,
) -> dict[str, Any]:
    seen: set[tuple[str, int]] = set()
    last_seq: dict[str, int] = {}
    violations = duplicates = 0
    latencies: list[float] = []
    arrivals: list[float] = []
    for r in records:  # acceptance order
        body = r.body
        key = (str(body["test_user"]), int(body["test_seq"]))
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        if key[1] < last_seq.get(key[0], -1):
            violations += 1
        last_seq[key[0]] = key[1]
        if r.arrival <= t_done + 0.5:
            arrivals.append(r.arrival)
            ts = timestamps[key] / 1000.0
            latencies.append(r.arrival - max(ts, t_spawn))
    delivered = len(seen)
    throughput = None
    if len(arrivals) >= 2 and arrivals[-1] > arrivals[0]:
        throughput = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    cpu_per_1k = None
    if first is not None and last is not None and last[1] > first[1]:
        cpu_per_1k = (last[2] - first[2]) / ((last[1] - first[1]) / 1000.0)
    complete = done_reason == "complete"
    return {
        "pipeline": v.name,
        "status": done_reason,
        "returncode": returncode,
        "delivered": delivered,
        "expected": expected,
        "loss": (expected - delivered) if complete else None,
        "duplicates": duplicates,
        "order_violations": violations,
        "events_per_s": throughput,
        "cpu_s_per_1k": cpu_per_1k,
        "cpu_s_total": rusage.ru_utime + rusage.ru_stime,
        "peak_rss_mb": peak_rss,
        "latency_p50_s": pct(latencies, 0.50),
        "latency_p99_s": pct(latencies, 0.99),
        "wall_s": t_done - t_spawn,
        "startup_s": (first[0] - t_spawn) if first else None,
    }


# -- reporting -------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    versions = {}
    for mod in ("confluent_kafka", "httpx", "fastavro", "quixstreams"):
        with contextlib.suppress(Exception):
            versions[mod] = __import__(mod).__version__
    with contextlib.suppress(Exception):
        import confluent_kafka

        versions["librdkafka"] = confluent_kafka.libversion()[0]
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "mem_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "loadavg_start": os.getloadavg(),
    }


def fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def median_of(rows: list[dict[str, Any]], key: str) -> Any:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def summary(results: list[dict[str, Any]], latencies: list[float]) -> str:
    lines = []
    for latency in latencies:
        lines.append(f"\n### Simulator latency {latency:g} ms\n")
        lines.append(
            "| pipeline | runs | events/s | CPU s / 1k events | peak RSS MB | p50 latency s "
            "| p99 latency s | delivered | loss | dups | order violations | status |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        names = list(dict.fromkeys(r["pipeline"] for r in results if r["latency_ms"] == latency))
        for name in names:
            rows = [r for r in results if r["latency_ms"] == latency and r["pipeline"] == name]
            statuses = ",".join(sorted({r["status"] for r in rows}))
            losses = [r["loss"] for r in rows if r["loss"] is not None]
            lines.append(
                f"| {name} | {len(rows)} | {fmt(median_of(rows, 'events_per_s'), ',.0f')} "
                f"| {fmt(median_of(rows, 'cpu_s_per_1k'), '.3f')} "
                f"| {fmt(median_of(rows, 'peak_rss_mb'), '.0f')} "
                f"| {fmt(median_of(rows, 'latency_p50_s'), '.1f')} "
                f"| {fmt(median_of(rows, 'latency_p99_s'), '.1f')} "
                f"| {fmt(median_of(rows, 'delivered'), ',.0f')} "
                f"| {fmt(max(losses, default=None), 'd')} "
                f"| {max(r['duplicates'] for r in rows)} "
                f"| {max(r['order_violations'] for r in rows)} | {statuses} |"
            )
    staged = [r for r in results if r.get("stages_ms_per_event")]
    if staged:
        lines.append(
            "\n### CPU ms per event by stage (py-spy samples x measured CPU; bench/stages.py)\n"
        )
        names = ("librdkafka", *stages.STAGES)
        lines.append("| pipeline | latency ms | run | total | " + " | ".join(names) + " |")
        lines.append("|---|---|---|---|" + "---|" * len(names))
        for r in staged:
            per = r["stages_ms_per_event"]
            lines.append(
                f"| {r['pipeline']} | {r['latency_ms']:g} | {r['run']} | {r['cpu_s_per_1k']:.3f} | "
                + " | ".join(f"{per.get(s, 0.0):.3f}" for s in names)
                + " |"
            )
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------
def variants(only: set[str], before: str = "") -> list[Variant]:
    """The pipelines to run; ``only`` holds kinds (naive, quix, connector, floor) or names.
    ``before``: a copy of an earlier connector (``git archive``), run beside the current one."""
    every = [
        Variant("naive", "naive"),
        Variant("quix", "quix", concurrency=16),
        *([Variant("connector-before", "connector", pythonpath=before)] if before else []),
        Variant("connector-default", "connector"),
        Variant("connector-ledger-off", "connector", env={"LEDGER_ENABLED": "false"}),
        # Issue #15: an intent in the sent-ledger, acknowledged, before every request.
        Variant("connector-dead-letter", "connector", env={"AMBIGUOUS_SEND_POLICY": "dead-letter"}),
        Variant("connector-tuned", "connector", env=dict(TUNED_ENV)),
        Variant("floor-64", "floor", concurrency=64),
        Variant("floor-256", "floor", concurrency=256),
        # The floor on the connector's own HTTP stack (connector/inkit/netio.py, issue #20).
        Variant("floor-64-netio", "floor", concurrency=64, env={"stack": "connector"}),
        # The in-flight sweep (`--only sweep`): the connector's defaults but INKIT_MAX_IN_FLIGHT.
        *(
            Variant(f"connector-if{n}", "sweep", env={"INKIT_MAX_IN_FLIGHT": str(n)})
            for n in (1, 16, 64, 256)
        ),
    ]
    return [v for v in every if v.kind in only or v.name in only]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="5k events over 500 users, 1 run")
    parser.add_argument("--runs", type=int, default=None, help="runs per scenario (default 3)")
    parser.add_argument("--events", type=int, default=None, help="default 100,000")
    parser.add_argument("--users", type=int, default=None, help="default 5,000")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 50.0])
    parser.add_argument("--only", default="naive,quix,connector,floor")
    parser.add_argument(
        "--budget-s", type=float, default=30.0, help="time box per pipeline run (seconds)"
    )
    parser.add_argument(
        "--slow-budget-s",
        type=float,
        default=30.0,
        help="time box for the naive loop and, at latency > 0, the quixstreams pipeline",
    )
    parser.add_argument("--bootstrap", default=None, help="use this broker instead of starting one")
    parser.add_argument("--out", default=str(BENCH_DIR / "results.json"))
    parser.add_argument("--pythonpath", default="", help="prepended to PYTHONPATH (experiments)")
    parser.add_argument(
        "--quix-python",
        default=None,
        help="the Python that runs the quixstreams pipeline (a venv of its own: quixstreams pins "
        "a confluent-kafka older than the connector's)",
    )
    parser.add_argument("--profile", default=None, help="py-spy raw output for the connector")
    parser.add_argument(
        "--before",
        default=None,
        help="directory holding an earlier connector (git archive REV | tar -x -C DIR): adds "
        "the variant connector-before (its defaults), run in the same run as the others",
    )
    parser.add_argument(
        "--stages",
        action="store_true",
        help="CPU per event by stage for every connector and floor run (py-spy; bench/stages.py)",
    )
    parser.add_argument(
        "--stages-gil",
        action="store_true",
        help="as --stages, sampling only the thread that holds the GIL (py-spy --gil)",
    )
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)
    n_events = args.events or (5_000 if args.quick else 100_000)
    n_users = args.users or (500 if args.quick else 5_000)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    chosen = variants(only, str(Path(args.before).resolve()) if args.before else "")

    from connector.testing.inkit_simulator import Faults, SimulatorClient
    from connector.testing.kafka_broker import KafkaBroker

    work = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    print(f"work dir (logs): {work}", flush=True)
    args.stages = args.stages or args.stages_gil
    if args.stages and not args.profile:
        args.profile = str(work / "profile")
    broker = None
    sim_proc = None
    try:
        if args.bootstrap:
            bootstrap = args.bootstrap
        else:
            broker = KafkaBroker()
            broker.start()
            bootstrap = broker.bootstrap_servers
        sim_port = free_port()
        sim_log = (work / "simulator.log").open("wb")
        sim_proc = subprocess.Popen(
            [
                *(PYTHON, "-m", "connector.testing.inkit_simulator", "--host", "127.0.0.1"),
                *("--port", str(sim_port), "--api-key", API_KEY),
            ],
            stdout=sim_log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        sim = SimulatorClient(f"http://127.0.0.1:{sim_port}", timeout_s=60)
        sim.wait_ready(20)
        topic = f"bench-identify-{int(time.time())}"
        print(f"producing {n_events:,} events over {n_users:,} users to {topic}...", flush=True)
        events = make_events(n_events, n_users)
        bodies = work / "bodies.jsonl"
        timestamps = produce_topic(bootstrap, topic, args.partitions, events, bodies)
        del events
        ctx = {
            "bootstrap": bootstrap,
            "topic": topic,
            "webhook_url": f"http://127.0.0.1:{sim_port}/integrations/webhook",
            "bodies": bodies,
            "timestamps": timestamps,
            "pythonpath": args.pythonpath,
            "quix_python": args.quix_python,
            "profile": args.profile,
            "profile_gil": args.stages_gil,
        }
        results: list[dict[str, Any]] = []
        info = machine()
        for run in range(1, runs + 1):
            for latency in args.latency_ms:
                sim.set_faults(Faults(latency_ms=latency))
                for v in chosen:
                    if v.name == "floor-256" and latency == 0:
                        continue  # at 0 ms more connections only cost httpcore CPU (see RESULTS)
                    slow = v.kind == "naive" or (v.kind == "quix" and latency > 0)
                    budget = args.slow_budget_s if slow else args.budget_s
                    tag = f"r{run}-{latency:g}ms"
                    load = os.getloadavg()[0]
                    sim_cpu_before = cpu_seconds(sim_proc.pid) or 0.0
                    result = run_one(v, ctx, sim, n_events, budget, work, tag)
                    sim_cpu = (cpu_seconds(sim_proc.pid) or 0.0) - sim_cpu_before
                    result.update(
                        run=run, latency_ms=latency, loadavg_before=load, simulator_cpu_s=sim_cpu
                    )
                    results.append(result)
                    print(
                        f"run {run} {latency:g}ms {v.name:18s} {result['status']:8s} "
                        f"{fmt(result['events_per_s'], ',.0f'):>7s} ev/s  "
                        f"cpu/1k {fmt(result['cpu_s_per_1k'], '.3f')}  "
                        f"rss {result['peak_rss_mb']:.0f} MB  "
                        f"p50 {fmt(result['latency_p50_s'], '.1f')}s "
                        f"p99 {fmt(result['latency_p99_s'], '.1f')}s  "
                        f"delivered {result['delivered']:,} dup {result['duplicates']} "
                        f"order {result['order_violations']} (load {load:.2f})",
                        flush=True,
                    )
                    if result.get("stages_ms_per_event"):
                        per = result["stages_ms_per_event"]
                        print(
                            "    CPU ms/event by stage: "
                            + ", ".join(f"{k} {v:.3f}" for k, v in per.items() if v),
                            flush=True,
                        )
                    Path(args.out).write_text(
                        json.dumps(
                            {
                                "machine": info,
                                "command": " ".join([Path(PYTHON).name, *sys.argv]),
                                "events": n_events,
                                "users": n_users,
                                "partitions": args.partitions,
                                "tuned_env": TUNED_ENV,
                                "results": results,
                            },
                            indent=1,
                        )
                    )
        print(summary(results, args.latency_ms))
        for r in results:
            if r.get("profile"):  # the top frames of each profiled run (bench/stages.py)
                cpu = r["cpu_s_per_1k"] - r.get("librdkafka_cpu_ms_per_event", 0.0)
                print(f"\n#### {r['pipeline']}, {r['latency_ms']:g} ms, run {r['run']}\n")
                print(stages.report(Path(r["profile"]), cpu, top=12))
        print(f"\nresults: {args.out}; logs: {work}")
        return 0
    finally:
        if sim_proc is not None:
            sim_proc.terminate()
            try:
                sim_proc.wait(10)
            except subprocess.TimeoutExpired:
                sim_proc.kill()
                sim_proc.wait()
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    sys.exit(main())
