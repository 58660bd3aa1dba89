"""`python -m connector.testing.kafka_broker up|down|status|fetch`: detached brokers for the demo
and `make kafka-up`, recorded in a state file per port so `down` finds them again."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from connector.testing.kafka_broker import KafkaBroker
from connector.testing.kafka_jars import (
    DEFAULT_VERSION,
    KafkaBrokerError,
    cache_root,
    ensure_kafka_jars,
)

DEFAULT_CLI_PORT = 9092


def _state_file(port: int) -> Path:
    return cache_root() / "run" / f"kafka-{port}.json"


def _read_state(port: int) -> dict[str, Any] | None:
    """The recorded detached broker on ``port`` if its JVM still runs; stale files are removed."""
    path = _state_file(port)
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if _is_our_jvm(int(state["pid"]), str(state["data_dir"])):
        return state
    path.unlink(missing_ok=True)
    return None


def _is_our_jvm(pid: int, data_dir: str) -> bool:
    # Match the command line, so a recycled pid never gets signalled by `down`.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    zombie = any(line.startswith("State:\tZ") for line in status.splitlines())
    return not zombie and "kafka.Kafka" in cmdline and data_dir in cmdline


def _stop_pid(pid: int, data_dir: str, timeout_s: float = 20) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline, killed = time.monotonic() + timeout_s, False
    while _is_our_jvm(pid, data_dir):
        if time.monotonic() > deadline:
            if killed:
                raise KafkaBrokerError(f"broker pid {pid} survived SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline, killed = time.monotonic() + 5, True
        time.sleep(0.1)


def _cmd_up(port: int, version: str) -> int:
    state = _read_state(port)
    if state is not None:
        print(f"Kafka already running at 127.0.0.1:{port} (pid {state['pid']})")  # noqa: T201
        return 0
    broker = KafkaBroker(port, version=version, detached=True)
    broker.start()
    state_path = _state_file(port)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state = {"pid": broker.pid, "port": port, "data_dir": str(broker.data_dir), "version": version}
    state_path.write_text(json.dumps(state, indent=2) + "\n")
    print(broker.bootstrap_servers)  # noqa: T201
    return 0


def _cmd_down(port: int) -> int:
    state = _read_state(port)
    if state is None:
        print(f"no Kafka broker recorded on port {port}")  # noqa: T201
        return 0
    _stop_pid(int(state["pid"]), str(state["data_dir"]))
    shutil.rmtree(state["data_dir"], ignore_errors=True)
    _state_file(port).unlink(missing_ok=True)
    print(f"stopped Kafka on 127.0.0.1:{port}")  # noqa: T201
    return 0


def _cmd_status(port: int) -> int:
    state = _read_state(port)
    if state is None:
        print(f"no Kafka broker running on port {port}")  # noqa: T201
        return 1
    print(f"Kafka running at 127.0.0.1:{port} (pid {state['pid']}, data {state['data_dir']})")  # noqa: T201
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m connector.testing.kafka_broker", description=__doc__
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("up", "start a detached broker and print its bootstrap address"),
        ("down", "stop the detached broker and delete its data"),
        ("status", "say whether a detached broker runs (exit 1 if not)"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--port", type=int, default=DEFAULT_CLI_PORT)
        command.add_argument("--version", default=DEFAULT_VERSION, help="Apache Kafka version")
    fetch = commands.add_parser("fetch", help="only download the Kafka jars into the cache")
    fetch.add_argument("--version", default=DEFAULT_VERSION, help="Apache Kafka version")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m connector.testing.kafka_broker``; returns the exit code."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "fetch":
            print(ensure_kafka_jars(args.version))  # noqa: T201
            return 0
        if args.command == "up":
            return _cmd_up(args.port, args.version)
        if args.command == "down":
            return _cmd_down(args.port)
        return _cmd_status(args.port)
    except KafkaBrokerError as exc:
        # One clear line; the log tail that follows is for whoever investigates.
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 1


if __name__ == "__main__":
    sys.exit(main())
