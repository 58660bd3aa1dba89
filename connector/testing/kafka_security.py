"""Secured listeners for the test broker: SASL_SSL (SCRAM-SHA-512, PLAIN), mutual TLS, and two
TLS listeners with a broken certificate (expired, wrong host), one port each on one broker.

One broker serves every mode, so the security tests pay for no JVM start of their own. Each
listener has its own settings under ``listener.name.<name>.``: Kafka applies listener-prefixed
SSL and SASL settings over the global ones (Kafka's broker configuration docs; the tests show it
on 4.1.1 and 3.9.2: each listener presents its own certificate and takes its own mechanisms).
The broker's first listener stays PLAINTEXT: inter-broker traffic, the readiness probe and the
tests' own admin clients use it, so a security test only exercises the client under test.

SCRAM users are created with Kafka's own tooling: ``kafka-storage format --add-scram`` (KIP-900,
Kafka 3.5+), which writes the credentials into the KRaft metadata log before the first start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from connector.testing.tls_material import TlsFiles

SCRAM_MECHANISM = "SCRAM-SHA-512"
# The SCRAM listener also takes SCRAM-SHA-256 (Aiven's default), with the same users.
SCRAM_MECHANISMS = (SCRAM_MECHANISM, "SCRAM-SHA-256")


class SecurityMode(StrEnum):
    """One secured listener of the test broker."""

    SASL_SSL_SCRAM = "sasl_ssl_scram"
    SASL_SSL_PLAIN = "sasl_ssl_plain"
    MTLS = "mtls"
    TLS_EXPIRED = "tls_expired"  # SSL; the broker presents a certificate that expired
    TLS_WRONG_HOST = "tls_wrong_host"  # SSL; the certificate names another host


# Listener name, security protocol and SASL mechanism of each mode.
_LISTENERS: dict[SecurityMode, tuple[str, str, str | None]] = {
    SecurityMode.SASL_SSL_SCRAM: ("SCRAM", "SASL_SSL", SCRAM_MECHANISM),
    SecurityMode.SASL_SSL_PLAIN: ("PLAINSSL", "SASL_SSL", "PLAIN"),
    SecurityMode.MTLS: ("MTLS", "SSL", None),
    SecurityMode.TLS_EXPIRED: ("EXPIRED", "SSL", None),
    SecurityMode.TLS_WRONG_HOST: ("WRONGHOST", "SSL", None),
}


@dataclass(frozen=True)
class BrokerSecurity:
    """What the secured listeners need: the TLS files and the SASL users (name -> password),
    valid for both SCRAM-SHA-512 and PLAIN."""

    tls: TlsFiles
    users: dict[str, str] = field(default_factory=dict)

    def listener_protocols(self) -> dict[str, str]:
        """Listener name -> security protocol, for ``listener.security.protocol.map``."""
        return {name: protocol for name, protocol, _ in _LISTENERS.values()}

    def listeners(self, ports: dict[SecurityMode, int]) -> list[str]:
        return [f"{_LISTENERS[mode][0]}://127.0.0.1:{port}" for mode, port in ports.items()]

    def broker_properties(self) -> dict[str, str]:
        """server.properties entries for every secured listener."""
        keystores = {
            SecurityMode.SASL_SSL_SCRAM: self.tls.server_keystore,
            SecurityMode.SASL_SSL_PLAIN: self.tls.server_keystore,
            SecurityMode.MTLS: self.tls.server_keystore,
            SecurityMode.TLS_EXPIRED: self.tls.expired_keystore,
            SecurityMode.TLS_WRONG_HOST: self.tls.wrong_host_keystore,
        }
        props = {
            "ssl.keystore.type": "PEM",
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.tls.ca),
        }
        for mode, (name, _, mechanism) in _LISTENERS.items():
            prefix = f"listener.name.{name.lower()}."
            props[prefix + "ssl.keystore.location"] = str(keystores[mode])
            if mechanism is not None:
                mechanisms = SCRAM_MECHANISMS if mechanism == SCRAM_MECHANISM else (mechanism,)
                props[prefix + "sasl.enabled.mechanisms"] = ",".join(mechanisms)
                for each in mechanisms:
                    props[prefix + f"{each.lower()}.sasl.jaas.config"] = _jaas(each, self.users)
        props["listener.name.mtls.ssl.client.auth"] = "required"
        return props

    def format_arguments(self) -> list[str]:
        """Extra ``kafka-storage format`` arguments that create the SCRAM users."""
        arguments: list[str] = []
        for user, password in self.users.items():
            for mechanism in SCRAM_MECHANISMS:
                arguments += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
        return arguments

    def client_config(self, mode: SecurityMode, username: str | None = None) -> dict[str, str]:
        """librdkafka settings (no bootstrap.servers) a well-configured client uses for ``mode``:
        the CA, plus the user's SASL credentials or the client certificate."""
        _, protocol, mechanism = _LISTENERS[mode]
        config = {"security.protocol": protocol, "ssl.ca.location": str(self.tls.ca)}
        if mechanism is not None:
            user = username if username is not None else next(iter(self.users))
            config |= {
                "sasl.mechanism": mechanism,
                "sasl.username": user,
                "sasl.password": self.users[user],
            }
        if mode is SecurityMode.MTLS:
            config |= {
                "ssl.certificate.location": str(self.tls.client_cert),
                "ssl.key.location": str(self.tls.client_key),
            }
        return config


def _jaas(mechanism: str, users: dict[str, str]) -> str:
    if mechanism == "PLAIN":
        # The PLAIN login module checks passwords against its own user_<name> options.
        entries = " ".join(f'user_{name}="{secret}"' for name, secret in users.items())
        return f"org.apache.kafka.common.security.plain.PlainLoginModule required {entries};"
    # SCRAM credentials live in the metadata log (see format_arguments), not in the JAAS entry.
    return "org.apache.kafka.common.security.scram.ScramLoginModule required;"


def client_settings_env(config: dict[str, str]) -> dict[str, str]:
    """The connector's ``KAFKA_CONFIG_*`` environment for a librdkafka config dict."""
    return {"KAFKA_CONFIG_" + key.upper().replace(".", "_"): value for key, value in config.items()}
