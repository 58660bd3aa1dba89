"""The start-up lines for security failures: librdkafka's error texts (copied from librdkafka
2.16's output against the test broker) map to one line that names the cause and the setting."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from connector.kafka.security_errors import AUTH_FAILED, explain
from connector.testing.tls_material import TlsFiles, make_tls_files

VERIFY_FAILED = (
    "ssl://127.0.0.1:{port}/bootstrap: SSL handshake failed: error:0A000086:SSL routines::"
    "certificate verify failed: broker certificate could not be verified, verify that "
    "ssl.ca.location is correctly configured or root CA certificates are installed "
    "(install ca-certificates package) (after 14ms in state SSL_HANDSHAKE)"
)


class FakeError:
    """What librdkafka's error callback receives: a code and a text."""

    def __init__(self, code: int, text: str) -> None:
        self._code, self._text = code, text

    def code(self) -> int:
        return self._code

    def str(self) -> str:
        return self._text


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@contextmanager
def serve_tls(keystore: Path) -> Iterator[int]:
    """A TLS server on 127.0.0.1 presenting ``keystore`` (key + chain) to each connection."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(keystore)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass  # the client refused our certificate: that is the point

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.mark.parametrize(
    ("keystore", "ca", "words"),
    [
        ("expired_keystore", "ca", "has expired"),
        ("wrong_host_keystore", "ca", "not valid for host '127.0.0.1'"),
        ("server_keystore", "other_ca", "not signed by a trusted CA"),
    ],
)
def test_a_failed_certificate_check_is_named_by_its_cause(
    tls: TlsFiles, keystore: str, ca: str, words: str
) -> None:
    with serve_tls(getattr(tls, keystore)) as port:
        conf = {"bootstrap.servers": f"127.0.0.1:{port}", "ssl.ca.location": str(getattr(tls, ca))}
        line = explain(FakeError(KafkaError._SSL, VERIFY_FAILED.format(port=port)), conf)
        assert line is not None
        assert words in line


def test_sasl_and_client_certificate_failures() -> None:
    auth = FakeError(KafkaError._AUTHENTICATION, "SASL authentication error: Invalid username")
    assert explain(auth, {}) == AUTH_FAILED
    refused = FakeError(
        KafkaError._TRANSPORT,
        "ssl://127.0.0.1:1/bootstrap: Receive failed: error:0A000412:SSL routines::"
        "ssl/tls alert bad certificate: SSL alert number 42",
    )
    line = explain(refused, {})
    assert line is not None
    assert "KAFKA_CONFIG_SSL_CERTIFICATE_LOCATION" in line


def test_other_errors_are_not_security_failures() -> None:
    assert explain(FakeError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"), {}) is None
    assert explain(FakeError(KafkaError._TRANSPORT, "Connection refused"), {}) is None
