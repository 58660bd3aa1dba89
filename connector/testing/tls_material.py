"""Throwaway TLS material for tests: a CA, server and client certificates, and broken variants.

Everything is generated with ``cryptography`` into a directory the caller owns (a temp dir), as
PEM files that both Kafka (``ssl.keystore.type=PEM``, KIP-651) and librdkafka / httpx read.
Nothing here is fit for production: keys are unencrypted and the CA lives for a day.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The names every good server certificate carries; the tests connect to 127.0.0.1.
LOOPBACK_NAMES = ("localhost", "127.0.0.1")
OTHER_HOST = "kafka.elsewhere.invalid"
_VALID_FOR = datetime.timedelta(days=1)


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the generated PEM files.

    ``server_keystore`` (and the broken variants) hold the private key followed by the
    certificate chain, the layout Kafka's PEM keystore wants; ``server_cert``/``server_key`` are
    the same certificate split, for HTTP servers. ``other_ca`` signed nothing the servers present:
    a client that trusts it instead of ``ca`` meets an "unknown CA".
    """

    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    server_keystore: Path
    expired_keystore: Path
    wrong_host_keystore: Path
    client_cert: Path
    client_key: Path


@dataclass(frozen=True)
class _Issuer:
    name: x509.Name
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def make_tls_files(directory: Path) -> TlsFiles:
    """Write a fresh CA and its certificates into ``directory`` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca = _make_ca("inkit-connector test CA", now)
    other = _make_ca("a CA nobody uses", now)
    _write(directory / "ca.pem", _cert_pem(ca.cert))
    _write(directory / "other-ca.pem", _cert_pem(other.cert))

    server_key, server_cert = _leaf(ca, "broker", LOOPBACK_NAMES, now, server=True)
    _write(directory / "server.pem", _cert_pem(server_cert))
    _write(directory / "server.key", _key_pem(server_key))
    _write(directory / "server-keystore.pem", _keystore(server_key, server_cert, ca))

    # Valid for a day that ended a day ago: "certificate has expired" on the client side.
    expired = _leaf(ca, "broker", LOOPBACK_NAMES, now - 2 * _VALID_FOR, server=True)
    _write(directory / "expired-keystore.pem", _keystore(*expired, ca))
    wrong_host = _leaf(ca, "broker", (OTHER_HOST,), now, server=True)
    _write(directory / "wrong-host-keystore.pem", _keystore(*wrong_host, ca))

    client_key, client_cert = _leaf(ca, "inkit-connector", (), now, server=False)
    _write(directory / "client.pem", _cert_pem(client_cert))
    _write(directory / "client.key", _key_pem(client_key))
    return TlsFiles(
        ca=directory / "ca.pem",
        other_ca=directory / "other-ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        server_keystore=directory / "server-keystore.pem",
        expired_keystore=directory / "expired-keystore.pem",
        wrong_host_keystore=directory / "wrong-host-keystore.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )


def _make_ca(common_name: str, now: datetime.datetime) -> _Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Issuer(name, key, cert)


def _leaf(
    issuer: _Issuer,
    common_name: str,
    names: tuple[str, ...],
    start: datetime.datetime,
    *,
    server: bool,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - datetime.timedelta(minutes=5))
        .not_valid_after(start + _VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
        )
    return key, builder.sign(issuer.key, hashes.SHA256())


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8, unencrypted: the form Kafka's PEM keystore accepts without ssl.key.password.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _keystore(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, ca: _Issuer) -> bytes:
    return _key_pem(key) + _cert_pem(cert) + _cert_pem(ca.cert)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)
