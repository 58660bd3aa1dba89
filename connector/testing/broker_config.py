"""server.properties of the test broker: one KRaft node (broker + controller) on 127.0.0.1,
sized for a shared 2-core machine, with the optional SASL and secured listeners."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from connector.testing.kafka_security import BrokerSecurity, SecurityMode

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


@dataclass(frozen=True)
class BrokerPorts:
    """The broker's ports on 127.0.0.1: its first listener, the controller, the secured ones."""

    client: int
    controller: int
    secure: dict[SecurityMode, int]


def write_broker_config(
    data_dir: Path,
    ports: BrokerPorts,
    sasl_plain_users: dict[str, str],
    security: BrokerSecurity | None,
) -> Path:
    """Write server.properties and the log4j2 configuration into ``data_dir``; return the former.

    With ``sasl_plain_users`` (the broker's own user first) the first listener speaks
    SASL_PLAINTEXT/PLAIN; with ``security`` the secured listeners of kafka_security.py are added.
    """
    protocol = "SASL_PLAINTEXT" if sasl_plain_users else "PLAINTEXT"
    listeners = [f"{protocol}://127.0.0.1:{ports.client}"]
    protocols = {"CONTROLLER": "PLAINTEXT", "PLAINTEXT": "PLAINTEXT"}
    protocols["SASL_PLAINTEXT"] = "SASL_PLAINTEXT"
    if security is not None:
        listeners += security.listeners(ports.secure)
        protocols |= security.listener_protocols()
    settings: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": 1,
        "listeners": ",".join([*listeners, f"CONTROLLER://127.0.0.1:{ports.controller}"]),
        "advertised.listeners": ",".join(listeners),
        "listener.security.protocol.map": ",".join(f"{k}:{v}" for k, v in protocols.items()),
        "inter.broker.listener.name": protocol,
        "controller.listener.names": "CONTROLLER",
        # Static voters rather than `format --standalone`: the voter set then comes from this
        # file on every start instead of being frozen into the log at format time.
        "controller.quorum.voters": f"1@127.0.0.1:{ports.controller}",
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
    if sasl_plain_users:
        # The first user is the broker's own (inter-broker traffic, readiness probe).
        user, password = next(iter(sasl_plain_users.items()))
        entries = sasl_plain_users
        jaas = "org.apache.kafka.common.security.plain.PlainLoginModule required "
        jaas += f'username="{user}" password="{password}" '
        jaas += " ".join(f'user_{name}="{secret}"' for name, secret in entries.items()) + ";"
        settings |= {
            "sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
        }
    if security is not None:
        settings |= security.broker_properties()
    path = data_dir / "server.properties"
    path.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    (data_dir / "log4j2.properties").write_text(_LOG4J2.format(log_file=data_dir / "server.log"))
    return path
