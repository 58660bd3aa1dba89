"""`make local-up` / `make local-down`: a local Kafka broker, the Schema Registry stand-in and the
Inkit simulator in the background, the topic and its dead-letter topic created, and the `export`
lines that point `inkit-connector` at them (the simulator's key included).

    python -m connector.testing.local up [--kafka-port 9092] [--topic identify]
    python -m connector.testing.local down

Everything binds to 127.0.0.1. `up` is idempotent; `down` stops what `up` started (the processes
recorded in its state file, checked by command line so a recycled pid is never signalled)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import KafkaException

# NewTopic: the documented import path, although the stubs declare it only in cimpl.
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from connector.testing.inkit_simulator.protocol import CONTROL_PREFIX, WEBHOOK_PATH
from connector.testing.kafka_broker_cli import DEFAULT_CLI_PORT
from connector.testing.kafka_jars import cache_root
from connector.testing.topics import wait_for_topic

BROKER_CLI = (sys.executable, "-m", "connector.testing.kafka_broker")
SIMULATOR_KEY = "test-api-key"  # the simulator's default --api-key
READY_TIMEOUT_S = 30.0
SERVICES = {
    # name: (module, health path)
    "simulator": ("connector.testing.inkit_simulator", CONTROL_PREFIX + "stats"),
    "registry": ("connector.testing.schema_registry", "/subjects"),
}


def _state_path(kafka_port: int) -> Path:
    return cache_root() / "run" / f"local-{kafka_port}.json"


def _alive(pid: int, module: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return module in cmdline


def _start(module: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives `make`; `down` stops it
        )
    return proc


def _wait_http(url: str, proc: subprocess.Popen[bytes] | None, module: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        # The Popen, not /proc/<pid>/cmdline: right after fork the child still shows ours.
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"error: {module} exited at start (see its log under {cache_root()})")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.2)
    raise SystemExit(f"error: {module} did not answer at {url} within {READY_TIMEOUT_S:.0f}s")


def _create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names], request_timeout=15)
    for name, future in futures.items():
        try:
            future.result(timeout=30)
        except TimeoutError:
            raise SystemExit(f"error: Kafka at {bootstrap} did not answer") from None
        except KafkaException as exc:
            if exc.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: up is idempotent
                raise SystemExit(f"error: cannot create topic {name}: {exc.args[0].str()}") from exc
        wait_for_topic(admin, name, partitions)


def exports(env: dict[str, str]) -> str:
    return "".join(f"export {k}={v}\n" for k, v in env.items())


def up(args: argparse.Namespace) -> int:
    state_path = _state_path(args.kafka_port)
    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(state_path.read_text())
    bootstrap = args.kafka_bootstrap
    if bootstrap is None:
        started = subprocess.run(
            [*BROKER_CLI, "up", "--port", str(args.kafka_port)],
            capture_output=True,
            text=True,
            check=False,
        )
        if started.returncode != 0:
            raise SystemExit(started.stderr.strip().splitlines()[-1] if started.stderr else "")
        bootstrap = f"127.0.0.1:{args.kafka_port}"
        state["kafka_port"] = args.kafka_port
    state_path.parent.mkdir(parents=True, exist_ok=True)
    ports = {"simulator": args.simulator_port, "registry": args.registry_port}
    for name, (module, health) in SERVICES.items():
        pid = state.get(name, {}).get("pid")
        proc = None
        if pid is None or not _alive(pid, module):
            proc = _start(module, ports[name], state_path.with_name(f"local-{name}.log"))
            state[name] = {"pid": proc.pid, "port": ports[name]}
            state_path.write_text(json.dumps(state, indent=2) + "\n")
        _wait_http(f"http://127.0.0.1:{state[name]['port']}{health}", proc, module)
    state_path.write_text(json.dumps(state, indent=2) + "\n")
    dlq = f"{args.topic}.dlq"
    _create_topics(bootstrap, [args.topic, dlq], args.partitions)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC": args.topic,
        "KAFKA_DLQ_TOPIC": dlq,
        "KAFKA_VALUE_FORMAT": "confluent-avro",
        "SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{state['registry']['port']}",
        "INKIT_API_URL": f"http://127.0.0.1:{state['simulator']['port']}{WEBHOOK_PATH}",
        "INKIT_API_KEY": SIMULATOR_KEY,
        "METRICS_HOST": "127.0.0.1",
    }
    print('# paste into your shell (or: eval "$(make -s local-up)"):')  # noqa: T201
    print(exports(env), end="")  # noqa: T201
    return 0


def down(args: argparse.Namespace) -> int:
    state_path = _state_path(args.kafka_port)
    try:
        state: dict[str, Any] = json.loads(state_path.read_text())
    except (OSError, ValueError):
        state = {}
    for name, (module, _health) in SERVICES.items():
        pid = state.get(name, {}).get("pid")
        if pid is not None and _alive(pid, module):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _alive(pid, module) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid, module):
                os.kill(pid, signal.SIGKILL)
            print(f"stopped {name} (pid {pid})")  # noqa: T201
    if "kafka_port" in state:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "connector.testing.kafka_broker",
                "down",
                "--port",
                str(state["kafka_port"]),
            ],
            check=False,
        )
    state_path.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m connector.testing.local", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "down"):
        command = commands.add_parser(name)
        command.add_argument("--kafka-port", type=int, default=DEFAULT_CLI_PORT)
    up_parser = commands.choices["up"]
    up_parser.add_argument(
        "--kafka-bootstrap", default=None, help="use this broker instead of starting one"
    )
    up_parser.add_argument("--simulator-port", type=int, default=8080)
    up_parser.add_argument("--registry-port", type=int, default=8081)
    up_parser.add_argument("--topic", default="identify")
    up_parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args(argv)
    return up(args) if args.command == "up" else down(args)


if __name__ == "__main__":
    sys.exit(main())
