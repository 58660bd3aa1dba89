"""A real single-node Apache Kafka broker (KRaft): jars from Maven Central, run as a child JVM."""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_VERSION = "4.1.1"
DEFAULT_CLI_PORT = 9092
# The slf4j 1.x binding Kafka's distribution ships; the Maven artifact leaves it out, and without
# it the broker logs nothing, so a failed start would have no log to show.
LOG4J_VERSION = "2.24.3"
# Small enough that several brokers fit beside the tests on a shared 2-core machine; SerialGC
# avoids G1's per-core threads and regions, which matter more than pause times here.
JVM_OPTS = ("-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError")
MARKER_NAME = ".complete"
LOG_TAIL_LINES = 40

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.inkit-connector</groupId>
  <artifactId>kafka-classpath</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j_version}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class KafkaBrokerError(RuntimeError):
    """The broker could not be fetched, started or stopped; the message says why."""


def cache_root() -> Path:
    """Where jars and detached-broker state live: ``$INKIT_CONNECTOR_CACHE`` or ~/.cache."""
    configured = os.environ.get("INKIT_CONNECTOR_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "inkit-connector"


def ensure_kafka_jars(version: str = DEFAULT_VERSION) -> Path:
    """Return the directory holding Kafka's classpath, running Maven only if it is not cached.

    Safe to call from several processes at once: a file lock serialises the fetch, jars land in a
    temporary directory first, and the marker file is written last, so a directory with a marker
    is always complete.
    """
    home = cache_root() / f"kafka-{version}"
    libs, marker = home / "libs", home / MARKER_NAME
    if marker.exists():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():  # another process fetched while we waited for the lock
            return libs
        staging = Path(tempfile.mkdtemp(prefix="fetch-", dir=home))
        try:
            _run_maven(version, staging)
            shutil.rmtree(libs, ignore_errors=True)  # leftovers of an interrupted rename
            (staging / "libs").rename(libs)
            marker.write_text(f"kafka_2.13 {version}\n")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return libs


def _run_maven(version: str, staging: Path) -> None:
    mvn = _require_tool("mvn", "Maven")
    (staging / "pom.xml").write_text(_POM.format(version=version, log4j_version=LOG4J_VERSION))
    command = [mvn, "-q", "-B", "-f", str(staging / "pom.xml"), "dependency:copy-dependencies"]
    command += [f"-DoutputDirectory={staging / 'libs'}", "-DincludeScope=runtime"]
    logger.info("fetching Apache Kafka %s from Maven Central", version)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any((staging / "libs").glob(f"kafka_2.13-{version}.jar")):
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise KafkaBrokerError(f"Maven could not fetch kafka_2.13 {version}: " + " | ".join(tail))


def _require_tool(name: str, what: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise KafkaBrokerError(f"{what} ({name}) not found on PATH; run scripts/install-kafka.sh")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the usual bind-to-0 race applies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """True when something already listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _random_cluster_id() -> str:
    # Kafka's Uuid.toString(): URL-safe base64 without padding. Kafka rejects ids starting with
    # '-' (they look like command-line flags), so draw again in that case.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker:
    """One KRaft node (broker + controller) on 127.0.0.1, for tests and the local demo.

    ``start()`` blocks until an AdminClient gets metadata listing the broker, or raises
    KafkaBrokerError with the tail of the broker log. ``stop()`` is graceful (SIGTERM, then SIGKILL
    after ``timeout_s``) and idempotent; ``kill()`` simulates a crash. ``restart()`` keeps the port
    and data directory, so topics and committed offsets survive. Unless ``detached``, the JVM dies
    with the Python process that started it (even on SIGKILL, via PR_SET_PDEATHSIG on Linux; that
    signal fires when the *thread* that started the JVM exits: start it from a long-lived thread).
    A data directory the broker created itself is deleted by ``stop()``; a given one is kept.
    With ``sasl_plain_users`` the client listener speaks SASL_PLAINTEXT with mechanism PLAIN.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        version: str = DEFAULT_VERSION,
        data_dir: Path | None = None,
        sasl_plain_users: dict[str, str] | None = None,
        detached: bool = False,
    ) -> None:
        self._fixed_port = port is not None
        self._port = port if port is not None else free_port()
        self._controller_port = free_port()
        self._version = version
        self._owns_data_dir = data_dir is None
        self._data_dir = data_dir
        self._users = dict(sasl_plain_users or {})
        # The broker authenticates to its own listener as this user (inter-broker traffic) and
        # the readiness probe uses it too, so tests' users stay exactly what the caller gave.
        self._internal_user = ("broker", secrets.token_hex(12))
        self._detached = detached
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        """The JVM's pid while it runs, else None."""
        return self._proc.pid if self._proc is not None and self.running else None

    @property
    def data_dir(self) -> Path | None:
        return self._data_dir

    def client_config(self, username: str | None = None) -> dict[str, str | int | float | bool]:
        """librdkafka settings for this broker; with SASL, as ``username`` or the internal user.

        Raises KeyError for a ``username`` that is not one of ``sasl_plain_users``.
        """
        config: dict[str, str | int | float | bool] = {"bootstrap.servers": self.bootstrap_servers}
        if self._users:
            user, password = self._internal_user
            if username is not None:
                user, password = username, self._users[username]
            config |= {
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "PLAIN",
                "sasl.username": user,
                "sasl.password": password,
            }
        return config

    def start(self, timeout_s: float = 90) -> None:
        if self.running:
            raise KafkaBrokerError(f"broker on {self.bootstrap_servers} is already running")
        java = _require_tool("java", "Java")
        libs = ensure_kafka_jars(self._version)
        if port_in_use(self._port):
            if self._fixed_port:
                raise KafkaBrokerError(f"port {self._port} on 127.0.0.1 is already in use")
            self._port = free_port()  # our pick was taken since __init__: pick again
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix=f"inkit-kafka-{self._port}-"))
        self._data_dir.mkdir(parents=True, exist_ok=True)
        properties = self._write_config(self._data_dir)
        classpath = ["-cp", f"{libs}/*"]
        if not (self._data_dir / "kraft" / "meta.properties").exists():
            _format_storage(java, classpath, properties, self._data_dir)
        log_config = f"-Dlog4j2.configurationFile={self._data_dir / 'log4j2.properties'}"
        command = [java, *JVM_OPTS, log_config, *classpath, "kafka.Kafka", str(properties)]
        with open(self._data_dir / "console.log", "ab") as console:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C in the terminal reaches Python, which stops the broker
                # gracefully, instead of killing the JVM mid-write.
                start_new_session=True,
                preexec_fn=None if self._detached else die_with_parent(os.getpid()),
            )
        if not self._detached:
            _register_for_cleanup(self)
        try:
            self._wait_ready(self._proc, time.monotonic() + timeout_s)
        except BaseException:
            self.stop(5)  # the error already carries the log tail; leave no JVM or temp dir
            raise

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout_s: float = 20) -> None:
        self._terminate(timeout_s)
        if self._owns_data_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def kill(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            self._proc.wait()
        _live_brokers.discard(self)

    def restart(self, timeout_s: float = 90) -> None:
        self._terminate(timeout_s=20)
        self._fixed_port = True  # clients hold this address: never move to another port
        self.start(timeout_s)

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"KafkaBroker({self.bootstrap_servers}, pid={self.pid}, version={self._version})"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the broker log and the JVM console, for error messages."""
        chunks = []
        for name in ("server.log", "console.log"):
            path = self._data_dir / name if self._data_dir is not None else None
            if path is not None and path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                chunks.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(chunks) or "(no broker log)"

    def _terminate(self, timeout_s: float) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "broker %s ignored SIGTERM for %.0fs; killing it", proc.pid, timeout_s
                )
                proc.kill()
                proc.wait()
        _live_brokers.discard(self)

    def _write_config(self, data_dir: Path) -> Path:
        protocol = "SASL_PLAINTEXT" if self._users else "PLAINTEXT"
        settings: dict[str, str | int] = {
            "process.roles": "broker,controller",
            "node.id": 1,
            "listeners": f"{protocol}://127.0.0.1:{self._port},CONTROLLER://127.0.0.1:"
            f"{self._controller_port}",
            "advertised.listeners": f"{protocol}://127.0.0.1:{self._port}",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
            "SASL_PLAINTEXT:SASL_PLAINTEXT",
            "inter.broker.listener.name": protocol,
            "controller.listener.names": "CONTROLLER",
            # Static voters rather than `format --standalone`: the voter set then comes from this
            # file on every start instead of being frozen into the log at format time.
            "controller.quorum.voters": f"1@127.0.0.1:{self._controller_port}",
            "log.dirs": str(data_dir / "kraft"),
            "auto.create.topics.enable": "false",
            "num.partitions": 1,
            "offsets.topic.replication.factor": 1,
            # 50 partitions by default: creating them delays the first group commit by seconds.
            "offsets.topic.num.partitions": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "transaction.state.log.num.partitions": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            # KIP-848 (group.protocol=consumer) groups: heartbeat and session are set here, not by
            # the client; 5 s / 45 s by default (and as minimums), which would slow every test.
            "group.consumer.min.heartbeat.interval.ms": 500,
            "group.consumer.heartbeat.interval.ms": 500,
            "group.consumer.min.session.timeout.ms": 6000,
            "group.consumer.session.timeout.ms": 6000,
            # After a crash (kill()) the controller refuses the new incarnation of node 1 until the
            # old one's session expires: 9 s by default, which every crash test would wait out.
            "broker.session.timeout.ms": 2000,
            "broker.heartbeat.interval.ms": 500,
            # Fewer threads and a small cleaner buffer (128 MiB by default) fit the small heap.
            "num.network.threads": 2,
            "num.io.threads": 2,
            "num.recovery.threads.per.data.dir": 1,
            "log.cleaner.dedupe.buffer.size": 8 * 1024 * 1024,
        }
        if self._users:
            user, password = self._internal_user
            entries = {user: password, **self._users}
            jaas = "org.apache.kafka.common.security.plain.PlainLoginModule required "
            jaas += f'username="{user}" password="{password}" '
            jaas += " ".join(f'user_{name}="{secret}"' for name, secret in entries.items()) + ";"
            settings |= {
                "sasl.enabled.mechanisms": "PLAIN",
                "sasl.mechanism.inter.broker.protocol": "PLAIN",
                "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
            }
        path = data_dir / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        (data_dir / "log4j2.properties").write_text(
            _LOG4J2.format(log_file=data_dir / "server.log")
        )
        return path

    def _wait_ready(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        # Imported here: the rest of this module (fetch, CLI) works without the client library.
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        # Wait for the socket first: librdkafka would log every refused connection to stderr.
        while not port_in_use(self._port):
            self._check_alive_before(proc, deadline)
            time.sleep(0.1)
        admin = AdminClient(self.client_config())
        last_error: BaseException | None = None
        while True:
            self._check_alive_before(proc, deadline, last_error)
            try:
                metadata = admin.list_topics(
                    timeout=min(5.0, max(0.5, deadline - time.monotonic()))
                )
            except KafkaException as exc:  # a timeout or transport error: not ready yet
                last_error = exc
                continue
            # An empty broker list means the node is still fenced: topics cannot be created yet.
            if metadata.brokers:
                return
            time.sleep(0.1)

    def _check_alive_before(
        self,
        proc: subprocess.Popen[bytes],
        deadline: float,
        last_error: BaseException | None = None,
    ) -> None:
        if proc.poll() is not None:
            raise KafkaBrokerError(
                f"broker JVM exited with {proc.returncode} during start\n{self.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise KafkaBrokerError(
                f"broker on {self.bootstrap_servers} not ready in time (last error: {last_error})"
                f"\n{self.log_tail()}"
            )


def _format_storage(java: str, classpath: list[str], properties: Path, data_dir: Path) -> None:
    command = [java, "-Xmx128m", *classpath, "kafka.tools.StorageTool", "format"]
    command += ["-t", _random_cluster_id(), "-c", str(properties)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise KafkaBrokerError(f"formatting KRaft storage in {data_dir} failed: {output}")


def die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGKILL the child when its parent dies (no orphan JVMs)."""
    pr_set_pdeathsig = 1
    try:
        # Resolved before fork: dlopen in the forked child could deadlock on a lock held by one
        # of the parent's other threads (librdkafka runs several).
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: atexit and the signal handlers are all we have

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


# Non-detached brokers still running, stopped at interpreter exit or on SIGTERM/SIGHUP.
_live_brokers: set[KafkaBroker] = set()
_cleanup_installed = False


def _register_for_cleanup(broker: KafkaBroker) -> None:
    global _cleanup_installed
    _live_brokers.add(broker)
    if _cleanup_installed:
        return
    _cleanup_installed = True
    atexit.register(_stop_all, 10.0)
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be installed from the main thread
    for signum in (signal.SIGTERM, signal.SIGHUP):
        # Only take over the default action; an application's own handler stays in charge.
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _stop_all_and_die)


def _stop_all(timeout_s: float) -> None:
    for broker in list(_live_brokers):
        broker.stop(timeout_s)


def _stop_all_and_die(signum: int, frame: FrameType | None) -> None:
    _stop_all(5.0)
    # Die of the same signal, as the default action would have done.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


# --- detached brokers and the command line ---------------------------------------------------


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
