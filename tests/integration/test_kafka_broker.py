"""The project's real Kafka broker, exercised through real sockets with confluent-kafka."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import connector.testing.kafka_jars as kafka_jars_module
from connector.testing.kafka_broker import (
    DEFAULT_VERSION,
    MARKER_NAME,
    KafkaBroker,
    KafkaBrokerError,
    cache_root,
    ensure_kafka_jars,
    free_port,
    port_in_use,
)
from tests.fixtures.kafka import TopicFactory, create_topic

pytestmark = pytest.mark.integration

SASL_USERS = {"alice": "alice-secret"}


def produce(config: dict[str, Any], topic: str, values: list[bytes]) -> None:
    producer = Producer(config | {"acks": "all"})
    for value in values:
        producer.produce(topic, value=value, key=b"k")
    assert producer.flush(15) == 0


def consume(config: dict[str, Any], topic: str, group: str, count: int) -> list[bytes]:
    """Read ``count`` records from the start of ``topic`` in ``group``, committing nothing."""
    consumer = Consumer(
        config | {"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while len(values) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            value = msg.value()
            assert value is not None
            values.append(value)
    finally:
        consumer.close()
    return values


def commit(config: dict[str, Any], group: str, topic: str, next_offset: int) -> None:
    consumer = Consumer(config | {"group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, next_offset)], asynchronous=False)
    finally:
        consumer.close()


def committed(config: dict[str, Any], group: str, topic: str) -> int:
    consumer = Consumer(config | {"group.id": group, "enable.auto.commit": False})
    try:
        [partition] = consumer.committed([TopicPartition(topic, 0)], timeout=15)
    finally:
        consumer.close()
    return int(partition.offset)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# --- the session broker ---------------------------------------------------------------------


def test_produce_and_consume(kafka_bootstrap: str, topic_factory: TopicFactory) -> None:
    topic = topic_factory()
    values = [f"record-{i}".encode() for i in range(20)]
    config = {"bootstrap.servers": kafka_bootstrap}

    produce(config, topic, values)

    assert consume(config, topic, f"group-{uuid.uuid4()}", len(values)) == values


def test_committed_offsets_read_back(kafka_bootstrap: str, topic_factory: TopicFactory) -> None:
    topic = topic_factory(partitions=3)
    config = {"bootstrap.servers": kafka_bootstrap}
    group = f"group-{uuid.uuid4()}"

    commit(config, group, topic, next_offset=7)

    assert committed(config, group, topic) == 7


def test_topic_factory_waits_for_every_partition_leader(
    admin: AdminClient, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(partitions=4)

    partitions = admin.list_topics(topic=topic, timeout=5).topics[topic].partitions
    assert sorted(partitions) == [0, 1, 2, 3]
    assert all(p.leader >= 0 for p in partitions.values())


# --- brokers of their own -------------------------------------------------------------------


def test_warm_start_reuses_jar_cache_and_stop_leaves_no_jvm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ensure_kafka_jars()  # normally a no-op: the session broker filled the cache
    marker = cache_root() / f"kafka-{DEFAULT_VERSION}" / MARKER_NAME
    mtime = marker.stat().st_mtime_ns

    def no_maven(version: str, staging: Path) -> None:
        raise AssertionError("Maven ran although the jar cache was complete")

    monkeypatch.setattr(kafka_jars_module, "_run_maven", no_maven)
    broker = KafkaBroker()
    started = time.monotonic()
    broker.start()
    warm_start_s = time.monotonic() - started
    pid, data_dir = broker.pid, broker.data_dir
    assert pid is not None
    assert data_dir is not None

    try:
        metadata = AdminClient(broker.client_config()).list_topics(timeout=10)
        assert list(metadata.brokers) == [1]
    finally:
        broker.stop()

    assert marker.stat().st_mtime_ns == mtime
    assert broker.pid is None
    assert not pid_alive(pid)
    assert not port_in_use(broker.port)
    assert not data_dir.exists()
    broker.stop()  # idempotent
    # Not a benchmark, but a cold JVM taking this long means something is badly wrong.
    assert warm_start_s < 60


def test_restart_and_crash_keep_topics_and_committed_offsets(tmp_path: Path) -> None:
    broker = KafkaBroker(data_dir=tmp_path / "kafka")
    broker.start()
    try:
        config = broker.client_config()
        bootstrap = broker.bootstrap_servers
        topic, group = f"test-{uuid.uuid4().hex}", f"group-{uuid.uuid4()}"
        create_topic(AdminClient(config), topic)
        produce(config, topic, [b"a", b"b", b"c"])
        commit(config, group, topic, next_offset=2)

        broker.restart()
        assert broker.bootstrap_servers == bootstrap
        assert committed(config, group, topic) == 2
        assert consume(config, topic, f"group-{uuid.uuid4()}", 3) == [b"a", b"b", b"c"]

        pid = broker.pid
        assert pid is not None
        broker.kill()
        assert broker.pid is None
        assert not pid_alive(pid)
        broker.restart()
        assert committed(config, group, topic) == 2
    finally:
        broker.stop()
    assert (tmp_path / "kafka" / "server.log").exists(), "a given data dir is kept"


def test_failed_start_raises_with_the_broker_log(tmp_path: Path) -> None:
    # A data dir formatted for another node id: the JVM starts, then exits with a clear error.
    kraft = tmp_path / "kafka" / "kraft"
    kraft.mkdir(parents=True)
    (kraft / "meta.properties").write_text(
        "version=1\nnode.id=2\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\ndirectory.id=AAAAAAAAAAAAAAAAAAAAAQ\n"
    )
    broker = KafkaBroker(data_dir=tmp_path / "kafka")

    with pytest.raises(KafkaBrokerError, match="exited with") as raised:
        broker.start(timeout_s=60)

    assert "server.log" in str(raised.value)
    assert broker.pid is None


def test_a_port_taken_before_the_jvm_binds_it_is_picked_again() -> None:
    """Ports are picked by binding to 0 and closing, so another process can take one before the
    JVM binds it (a CI run lost its demo to this: "Socket server failed to bind to
    127.0.0.1:35537: Address already in use"). Here a listener takes the controller port
    between the pick and the start; the broker must come up on new ports."""
    broker = KafkaBroker()
    squatter = socket.socket()
    try:
        squatter.bind(("127.0.0.1", broker._controller_port))
        squatter.listen()
        taken = broker._controller_port
        broker.start(timeout_s=90)
        assert broker._controller_port != taken
        config = {"bootstrap.servers": broker.bootstrap_servers}
        create_topic(AdminClient(config), "after-rebind")
        produce(config, "after-rebind", [b"v"])
    finally:
        squatter.close()
        broker.stop()


def test_jvm_dies_with_the_process_that_started_it() -> None:
    # A child Python starts a broker and is then SIGKILLed: no atexit or finally runs there,
    # so only PR_SET_PDEATHSIG can take the JVM down.
    script = (
        "from connector.testing.kafka_broker import KafkaBroker\n"
        "import time\n"
        "b = KafkaBroker(); b.start(); print(b.pid, b.data_dir, flush=True); time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid, data_dir = parent.stdout.readline().split()
        jvm_pid = int(pid)
        assert pid_alive(jvm_pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert wait_gone(jvm_pid, timeout_s=10), f"orphan broker JVM {jvm_pid} survived its parent"
    shutil.rmtree(data_dir)  # the killed parent had no chance to delete it


def test_cli_up_status_down() -> None:
    port = free_port()
    cli = [sys.executable, "-m", "connector.testing.kafka_broker"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, *args, "--port", str(port)], capture_output=True, text=True, timeout=120
        )

    try:
        up = run("up")
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip() == f"127.0.0.1:{port}"
        # The CLI has exited; the detached broker must still answer.
        metadata = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=10)
        assert list(metadata.brokers) == [1]

        again = run("up")
        assert again.returncode == 0
        assert "already running" in again.stdout
        assert run("status").returncode == 0
    finally:
        down = run("down")
    assert down.returncode == 0, down.stderr
    assert not port_in_use(port)
    assert run("status").returncode == 1
    assert run("down").returncode == 0  # nothing to stop is not an error


def test_cli_up_fails_in_one_line_when_port_is_taken() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "connector.testing.kafka_broker", "up", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: port {port} on 127.0.0.1 is already in use"


# --- SASL/PLAIN -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[KafkaBroker]:
    broker = KafkaBroker(sasl_plain_users=SASL_USERS)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_sasl_plain_right_password_works(sasl_broker: KafkaBroker) -> None:
    config = sasl_broker.client_config("alice")
    assert config["sasl.password"] == "alice-secret"
    topic = f"test-{uuid.uuid4().hex}"
    create_topic(AdminClient(config), topic)

    produce(config, topic, [b"hello"])

    assert consume(config, topic, f"group-{uuid.uuid4()}", 1) == [b"hello"]


def test_sasl_plain_wrong_password_fails_fast(sasl_broker: KafkaBroker) -> None:
    errors: list[KafkaError] = []
    producer = Producer(
        sasl_broker.client_config("alice")
        | {"sasl.password": "wrong", "error_cb": errors.append, "log_level": 0}
    )
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)

    assert errors, "no error reported for a wrong SASL password"
    assert errors[0].code() == KafkaError._AUTHENTICATION
    assert "Invalid username or password" in errors[0].str()
