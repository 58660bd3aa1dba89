"""`make demo`: Kafka, a schema registry and the Inkit simulator on loopback, a realistic stream of
Segment events produced and delivered by the real `inkit-connector` commands, and a summary."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import TextIO

import httpx

# NewTopic: the documented import path, although the stubs declare it only in cimpl.
from connector.settings import KAFKA_PASSTHROUGH_PREFIX, SETTINGS
from connector.testing.demo_events import (
    DemoStream,
    build_demo_stream,
)
from connector.testing.demo_kafka import DemoError, create_topics, produce_raw, read_dead_letters
from connector.testing.demo_report import Snapshot, Where, check_outcomes, write_summary
from connector.testing.inkit_simulator import Faults, InkitSimulator
from connector.testing.kafka_broker import (
    KafkaBroker,
    KafkaBrokerError,
    die_with_parent,
    free_port,
)
from connector.testing.schema_registry import SchemaRegistry

DEFAULT_USERS = 300
DEFAULT_TIMEOUT_S = 90.0
TOPIC = "segment.identify"
DLQ_TOPIC = f"{TOPIC}.dlq"  # the connector's default KAFKA_DLQ_TOPIC
PARTITIONS = 6
API_KEY = "demo-api-key"
SIMULATOR_SEED = 7
# What a real Inkit does on a normal day: some latency, the odd 503, a rate limit now and then.
DEMO_FAULTS = Faults(
    latency_ms=20.0,
    latency_max_ms=80.0,
    rate_5xx=0.03,
    statuses_5xx=(503,),
    rate_429=0.02,
    retry_after_s=1.0,
)
PROGRESS_INTERVAL_S = 1.0
STARTUP_TIMEOUT_S = 30.0
# The connector drains for DRAIN_TIMEOUT_SECONDS (20 s by default) on SIGTERM.
STOP_TIMEOUT_S = 40.0
LOG_TAIL_LINES = 30


class _Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C, so every `finally` stops what it started."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Demo:
    """Runs the demo once. ``run()`` blocks until the summary is printed and returns the exit
    code; it raises DemoError (failure), KeyboardInterrupt or _Terminated. Whatever happens,
    everything it started is stopped before ``run()`` returns or raises."""

    def __init__(self, *, users: int, timeout_s: float, wait_for_enter: bool, out: TextIO) -> None:
        self._users = users
        self._timeout_s = timeout_s
        self._wait_for_enter = wait_for_enter
        self._out = out
        self._started = time.monotonic()
        self._workdir = Path(tempfile.mkdtemp(prefix="inkit-connector-demo-"))
        self._log_path = self._workdir / "connector.log"
        self._metrics_port = free_port()
        self._connector: subprocess.Popen[bytes] | None = None

    def say(self, text: str = "") -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def step(self, text: str) -> None:
        self.say(f"[{time.monotonic() - self._started:5.1f}s] {text}")

    def run(self) -> int:
        stack = contextlib.ExitStack()
        try:
            return self._run(stack)
        except KeyboardInterrupt:
            self.say("\ninterrupted: stopping everything the demo started")
            raise
        except _Terminated as exc:
            self.say(f"\n{exc}: stopping everything the demo started")
            raise
        finally:
            # A second Ctrl-C must not cut the clean-up short; every step is bounded by a timeout.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            stack.close()

    def _run(self, stack: contextlib.ExitStack) -> int:
        stream = build_demo_stream(self._users)
        self.say(
            f"inkit-connector demo: {stream.total} records ({self._users} generated users, "
            "Segment's four Inkit examples, other event types and a few broken records)"
        )
        self.say(f"working directory: {self._workdir}")
        # A port from the kernel's ephemeral range (never 9092, where `make kafka-up` listens);
        # the broker picks another one if it was taken meanwhile.
        broker = KafkaBroker()
        self.step("starting Apache Kafka ...")
        try:
            broker.start()
        except KafkaBrokerError as exc:
            raise DemoError(f"Kafka did not start: {exc}") from exc
        stack.callback(self._stopped, "Kafka", broker.stop)
        registry = SchemaRegistry()
        registry.start()
        stack.callback(self._stopped, "schema registry", registry.stop)
        simulator = InkitSimulator(api_key=API_KEY, faults=DEMO_FAULTS, seed=SIMULATOR_SEED)
        simulator.start()
        stack.callback(self._stopped, "Inkit simulator", simulator.stop)
        self.step(
            f"Kafka ready on {broker.bootstrap_servers}; schema registry at {registry.url}; "
            "Inkit simulator at "
            f"{simulator.base_url} ({_describe(DEMO_FAULTS)})"
        )

        create_topics(broker.bootstrap_servers, {TOPIC: PARTITIONS, DLQ_TOPIC: 1})
        self.step(f"created topics {TOPIC} ({PARTITIONS} partitions) and {DLQ_TOPIC}")
        env = _clean_env(os.environ) | {
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "KAFKA_TOPIC": TOPIC,
            "SCHEMA_REGISTRY_URL": registry.url,
        }
        self._produce(stream, env, broker.bootstrap_servers)

        env |= {
            "INKIT_API_KEY": API_KEY,
            "INKIT_API_URL": simulator.webhook_url,
            "METRICS_HOST": "127.0.0.1",
            "METRICS_PORT": str(self._metrics_port),
        }
        self._start_connector(env, stack)
        final = self._watch(stream)
        self.step("done: every record finished and the consumer lag is back to 0")

        dead_letters = read_dead_letters(broker.bootstrap_servers, DLQ_TOPIC)
        write_summary(
            self.say,
            stream,
            final,
            simulator,
            dead_letters,
            where=Where(
                metrics_url=self._metrics_url,
                waits_for_enter=self._wait_for_enter,
                log_path=self._log_path,
                events_path=self._workdir / "events.jsonl",
                command=_shown(self._connector_command()),
                dlq_topic=DLQ_TOPIC,
            ),
        )
        problems = check_outcomes(stream, final, dead_letters, DLQ_TOPIC)
        if problems:
            raise DemoError(
                "the result differs from what the demo expects:\n  " + "\n  ".join(problems)
            )
        if self._wait_for_enter:
            self.say(f"The connector is still running: curl {self._metrics_url}")
            with contextlib.suppress(EOFError, KeyboardInterrupt):
                input("Press Enter to stop everything. ")
        code = self._stop_connector()
        if code != 0:
            raise DemoError(f"the connector exited with {code} on SIGTERM; see {self._log_path}")
        self.step("connector drained and exited 0 on SIGTERM")
        return 0

    @property
    def _metrics_url(self) -> str:
        return f"http://127.0.0.1:{self._metrics_port}/metrics"

    def _connector_command(self) -> list[str]:
        # The console script users run, next to this interpreter; else the same CLI via -m.
        script = Path(sys.executable).with_name("inkit-connector")
        return [str(script)] if script.exists() else [sys.executable, "-m", "connector"]

    def _produce(self, stream: DemoStream, env: Mapping[str, str], bootstrap: str) -> None:
        events = self._workdir / "events.jsonl"
        events.write_text("".join(json.dumps(e) + "\n" for e in stream.events))
        command = [*self._connector_command(), "produce", str(events)]
        self.step(f"$ inkit-connector produce {events.name}   (KAFKA_VALUE_FORMAT=confluent-avro)")
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, check=False, timeout=120
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise DemoError(f"`inkit-connector produce` exited with {result.returncode}:\n{output}")
        # stdout only: librdkafka writes benign start-up warnings straight to stderr.
        self.step(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "produced")
        produce_raw(bootstrap, TOPIC, stream.raw)
        self.step(f"produced {len(stream.raw)} records that are not events (bytes, a tombstone)")

    def _start_connector(self, env: Mapping[str, str], stack: contextlib.ExitStack) -> None:
        self.step(f"$ inkit-connector run   (log: {self._log_path})")
        with self._log_path.open("wb") as log:
            self._connector = subprocess.Popen(
                [*self._connector_command(), "run"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Even if this process is killed with SIGKILL, no connector is left behind.
                preexec_fn=die_with_parent(os.getpid()),
            )
        stack.callback(self._stop_connector, announce=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while self._scrape() is None:
            self._check_connector_alive()
            if time.monotonic() > deadline:
                raise DemoError(
                    f"the connector's {self._metrics_url} did not answer within "
                    f"{STARTUP_TIMEOUT_S:.0f}s; its log ({self._log_path}) ends with:\n"
                    f"{self._log_tail()}"
                )
            time.sleep(0.2)
        self.step(f"connector up; metrics at {self._metrics_url}")

    def _watch(self, stream: DemoStream) -> Snapshot:
        """Print progress from /metrics until every record is finished and the lag is 0."""
        deadline = time.monotonic() + self._timeout_s
        while True:
            self._check_connector_alive()
            snap = self._scrape()
            if snap is not None:
                lag = snap.total_lag
                retries = sum(snap.retries.values())
                delivered, skipped = snap.outcome("delivered"), snap.outcome("skipped")
                self.step(
                    f"delivered {delivered:4d}  skipped {skipped:3d}"
                    f"  dead-lettered {snap.outcome('dead_lettered'):2d}  retries {retries:3d}"
                    f"  lag {'-' if lag is None else int(lag)}"
                )
                done = snap.finished >= stream.total and len(snap.lag) == PARTITIONS
                if done and lag == 0:
                    return snap
            if time.monotonic() > deadline:
                raise DemoError(
                    f"not finished after {self._timeout_s:.0f}s; the connector's log "
                    f"({self._log_path}) ends with:\n{self._log_tail()}"
                )
            time.sleep(PROGRESS_INTERVAL_S)

    def _scrape(self) -> Snapshot | None:
        try:
            response = httpx.get(self._metrics_url, timeout=2.0)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        return Snapshot.parse(response.text, TOPIC)

    def _check_connector_alive(self) -> None:
        if self._connector is not None and self._connector.poll() is not None:
            raise DemoError(
                f"the connector exited with {self._connector.returncode}; its log "
                f"({self._log_path}) ends with:\n{self._log_tail()}"
            )

    def _stop_connector(self, *, announce: bool = False) -> int | None:
        """SIGTERM the connector (it drains and commits) and wait; kill it if it hangs."""
        proc = self._connector
        if proc is None:
            return None
        if proc.poll() is None:
            if announce:
                self.step("stopping the connector (SIGTERM: it drains, commits and exits)")
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.step(f"the connector ignored SIGTERM for {STOP_TIMEOUT_S:.0f}s: killed it")
        return proc.returncode

    def _stopped(self, what: str, stop: Callable[[], None]) -> None:
        stop()
        self.step(f"stopped {what}")

    def _log_tail(self) -> str:
        if not self._log_path.exists():
            return "(no log)"
        lines = self._log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-LOG_TAIL_LINES:])


def _describe(faults: Faults) -> str:
    return (
        f"latency {faults.latency_ms:g}-{faults.latency_max_ms or faults.latency_ms:g} ms, "
        f"{faults.rate_5xx:.0%} {'/'.join(map(str, faults.statuses_5xx))}, "
        f"{faults.rate_429:.0%} 429 with Retry-After: {faults.retry_after_s:g}"
    )


def _shown(command: list[str]) -> str:
    """A command as the user would type it from the current directory."""
    with contextlib.suppress(ValueError):
        command = [str(Path(command[0]).relative_to(Path.cwd())), *command[1:]]
    return " ".join(command)


def _clean_env(env: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without any connector setting, so that a KAFKA_* or INKIT_*
    exported in the user's shell cannot change what the demo runs against."""
    names = {s.name for s in SETTINGS}
    return {
        k: v
        for k, v in env.items()
        if k not in names and not k.startswith(KAFKA_PASSTHROUGH_PREFIX)
    }


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m connector.testing.demo", description=__doc__)
    parser.add_argument(
        "--users",
        type=int,
        default=DEFAULT_USERS,
        help=f"generated users (default {DEFAULT_USERS})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds to wait for delivery before failing (default {DEFAULT_TIMEOUT_S:.0f})",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="do not keep the connector running until Enter (the default off a terminal)",
    )
    args = parser.parse_args(argv)
    if args.users < 1:
        parser.error("--users must be at least 1")
    return args


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    raise _Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m connector.testing.demo``; returns the exit code."""
    args = _parse_args(argv)
    # Installed before the broker starts, so that it does not install its own (which would
    # stop only the broker): SIGTERM/SIGHUP then unwind through every `finally`, like Ctrl-C.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_terminated)
    demo = Demo(
        users=args.users,
        timeout_s=args.timeout,
        wait_for_enter=sys.stdin.isatty() and not args.no_wait,
        out=sys.stdout,
    )
    try:
        return demo.run()
    except DemoError as exc:
        demo.say(f"\ndemo failed: {exc}")
        return 1
    except KeyboardInterrupt:
        demo.say("interrupted; everything the demo started is stopped")
        return 130
    except _Terminated as exc:
        demo.say(f"{exc}; everything the demo started is stopped")
        return 128 + exc.signum


if __name__ == "__main__":
    sys.exit(main())
