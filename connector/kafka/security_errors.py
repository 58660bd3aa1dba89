"""One clear line for each way a secured Kafka connection fails at start-up.

librdkafka reports every failed certificate check with the same text ("certificate verify
failed: broker certificate could not be verified ..."), so an expired certificate, a certificate
for another host and an unknown CA all read alike (observed with librdkafka 2.16.0 against the
test broker's listeners; tests/unit/kafka/test_security_errors.py keeps the text it printed).
When librdkafka reports one, ``explain`` repeats the TLS handshake once with Python's ssl
module, with the same CA file and hostname rule, and names the cause from OpenSSL's verify
result. Texts name settings, never their values (no passwords, no paths).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError

_PROBE_TIMEOUT_S = 3.0
# OpenSSL X509_V_ERR_* codes (include/openssl/x509_vfy.h).
_EXPIRED, _NOT_YET_VALID = 10, 9
_NAME_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
AUTH_FAILED = "Kafka authentication failed: check KAFKA_CONFIG_SASL_* settings"
_UNTRUSTED = (
    "Kafka TLS: the broker's certificate is not signed by a trusted CA: "
    "set KAFKA_CONFIG_SSL_CA_LOCATION to the cluster's CA certificate"
)
_CLIENT_CERT = (
    "Kafka TLS: the broker refused the client certificate (none sent, or not trusted): "
    "set KAFKA_CONFIG_SSL_CERTIFICATE_LOCATION and KAFKA_CONFIG_SSL_KEY_LOCATION (mutual TLS)"
)
# What OpenSSL says when the server rejects the client's certificate or its absence: TLS alerts
# 42 (bad certificate), 48 (unknown CA), 116 (certificate required, TLS 1.3).
_CLIENT_CERT_ALERTS = ("alert bad certificate", "alert unknown ca", "alert certificate required")


def explain(error: Any, conf: Mapping[str, Any]) -> str | None:
    """The one-line cause of a librdkafka ``KafkaError`` that means the connector's security
    settings do not fit the cluster, or None when ``error`` is something else."""
    code, text = error.code(), error.str()
    if code == KafkaError._AUTHENTICATION and "SSL handshake" not in text:
        return AUTH_FAILED
    if "certificate verify failed" in text:
        return _diagnose_server_certificate(conf)
    if code in (KafkaError._SSL, KafkaError._TRANSPORT) and any(
        alert in text for alert in _CLIENT_CERT_ALERTS
    ):
        return _CLIENT_CERT
    if code == KafkaError._SSL:
        # Files that cannot be read and the like: librdkafka's text names the setting.
        return f"Kafka TLS failed: {_strip_broker(text)}"
    return None


def _diagnose_server_certificate(conf: Mapping[str, Any]) -> str:
    host, port = _first_broker(str(conf.get("bootstrap.servers", "")))
    context = ssl.create_default_context(cafile=conf.get("ssl.ca.location") or None)
    context.check_hostname = conf.get("ssl.endpoint.identification.algorithm", "https") != "none"
    try:
        with (
            socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            pass
    except ssl.SSLCertVerificationError as exc:
        if exc.verify_code == _EXPIRED:
            return (
                f"Kafka TLS: the broker's certificate at {host}:{port} has expired: "
                "the cluster's operator must renew it"
            )
        if exc.verify_code == _NOT_YET_VALID:
            return (
                f"Kafka TLS: the broker's certificate at {host}:{port} is not valid yet: "
                "check this machine's clock"
            )
        if exc.verify_code in _NAME_MISMATCH:
            return (
                f"Kafka TLS: the broker's certificate is not valid for host {host!r}: "
                "use a broker name the certificate lists in KAFKA_BOOTSTRAP_SERVERS"
            )
        return _UNTRUSTED
    except (OSError, ValueError):
        pass  # the broker went away, or the CA file is unreadable: librdkafka's verdict stands
    return _UNTRUSTED


def _first_broker(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    for prefix in ("sasl_ssl://", "ssl://", "sasl_plaintext://", "plaintext://"):
        first = first.removeprefix(prefix)
    host, _, port = first.rpartition(":")
    return host.strip("[]") or first, int(port) if port.isdigit() else 9092


def _strip_broker(text: str) -> str:
    # "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: ..." -> "SSL handshake failed: ..."
    _, sep, rest = text.partition("/bootstrap: ")
    return rest if sep else text
