"""A real single-node Apache Kafka broker (KRaft): jars from Maven Central, run as a child JVM."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

from connector.testing.broker_config import BrokerPorts, write_broker_config
from connector.testing.kafka_jars import (
    DEFAULT_VERSION,
    MARKER_NAME,
    KafkaBrokerError,
    cache_root,
    ensure_kafka_jars,
    require_tool,
)
from connector.testing.kafka_security import BrokerSecurity, SecurityMode
from connector.testing.processes import die_with_parent, forget_for_cleanup, register_for_cleanup

__all__ = [
    "DEFAULT_VERSION",
    "MARKER_NAME",
    "KafkaBroker",
    "KafkaBrokerError",
    "cache_root",
    "die_with_parent",
    "ensure_kafka_jars",
    "free_port",
    "port_in_use",
]

logger = logging.getLogger(__name__)

# Small enough that several brokers fit beside the tests on a shared 2-core machine; SerialGC
# avoids G1's per-core threads and regions, which matter more than pause times here.
JVM_OPTS = ("-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError")
LOG_TAIL_LINES = 40
# Starts of a fresh broker whose JVM found one of its ports taken (see KafkaBroker.start).
BIND_ATTEMPTS = 3


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
    With ``security`` the broker also opens one secured listener per ``SecurityMode`` (see
    kafka_security.py); ``address(mode)`` and ``secure_client_config(mode)`` reach them.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        version: str = DEFAULT_VERSION,
        data_dir: Path | None = None,
        sasl_plain_users: dict[str, str] | None = None,
        security: BrokerSecurity | None = None,
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
        self._security = security
        self._secure_ports = {mode: free_port() for mode in SecurityMode} if security else {}
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

    def address(self, mode: SecurityMode) -> str:
        """bootstrap.servers of the secured listener for ``mode`` (needs ``security``)."""
        return f"127.0.0.1:{self._secure_ports[mode]}"

    def secure_client_config(
        self, mode: SecurityMode, username: str | None = None
    ) -> dict[str, str | int | float | bool]:
        """librdkafka settings of a correctly configured client of the ``mode`` listener."""
        if self._security is None:
            raise KafkaBrokerError("this broker was started without security listeners")
        return {
            "bootstrap.servers": self.address(mode),
            **self._security.client_config(mode, username),
        }

    def start(self, timeout_s: float = 90) -> None:
        if self.running:
            raise KafkaBrokerError(f"broker on {self.bootstrap_servers} is already running")
        for attempt in range(1, BIND_ATTEMPTS + 1):
            fresh = self._data_dir is None
            try:
                self._start_once(timeout_s)
                return
            except _PortTaken:
                # Our ports are picked by binding to port 0 and closing again, so another
                # process on the machine (a second test worker doing the same) can be handed
                # one of them before the JVM binds it. A fresh broker then picks again; a
                # restarted one keeps its address, which its clients hold.
                if not fresh or attempt == BIND_ATTEMPTS:
                    raise
                logger.warning("a port of the new broker was taken before it bound; new ports")
                self._pick_ports()

    def _pick_ports(self) -> None:
        if not self._fixed_port:
            self._port = free_port()
        self._controller_port = free_port()
        self._secure_ports = {mode: free_port() for mode in self._secure_ports}

    def _start_once(self, timeout_s: float) -> None:
        java = require_tool("java", "Java")
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
            scram = self._security.format_arguments() if self._security else []
            _format_storage(java, classpath, properties, self._data_dir, scram)
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
            register_for_cleanup(self)
        try:
            self._wait_ready(self._proc, time.monotonic() + timeout_s)
        except KafkaBrokerError as exc:
            # Read before stop() deletes the data dir. The whole log: the bind error is followed
            # by the broker's shutdown lines, more than the message's tail shows.
            port_taken = self._log_contains("Address already in use")
            self.stop(5)  # the error already carries the log tail; leave no JVM or temp dir
            if port_taken:
                raise _PortTaken(str(exc)) from exc
            raise
        except BaseException:
            self.stop(5)
            raise

    def _log_contains(self, text: str) -> bool:
        for name in ("server.log", "console.log"):
            path = self._data_dir / name if self._data_dir is not None else None
            if path is not None and path.exists() and text in path.read_text(errors="replace"):
                return True
        return False

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
        forget_for_cleanup(self)

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
        forget_for_cleanup(self)

    def _write_config(self, data_dir: Path) -> Path:
        return write_broker_config(
            data_dir,
            BrokerPorts(self._port, self._controller_port, self._secure_ports),
            dict([self._internal_user], **self._users) if self._users else {},
            self._security,
        )

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


class _PortTaken(KafkaBrokerError):
    """The JVM could not bind one of the broker's ports: another process has it."""


def _format_storage(
    java: str, classpath: list[str], properties: Path, data_dir: Path, extra: list[str]
) -> None:
    command = [java, "-Xmx128m", *classpath, "kafka.tools.StorageTool", "format"]
    command += ["-t", _random_cluster_id(), "-c", str(properties), *extra]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise KafkaBrokerError(f"formatting KRaft storage in {data_dir} failed: {output}")


if __name__ == "__main__":
    from connector.testing.kafka_broker_cli import main

    sys.exit(main())
