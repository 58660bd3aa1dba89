"""Secrets and personal data: the API key and trait values never appear in logs (text or JSON),
metric labels, exception texts or dead-letter headers, whatever the path (delivery, a 422 and a
mapping failure dead-lettered, a refused key, --dry-run, `check`, `preview`, configuration
errors). Plus the transport rules: https unless loopback or an explicit opt-in, and TLS always
verified (a self-signed Inkit is refused until INKIT_CA_BUNDLE trusts it)."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connector.errors import ConfigError
from connector.events.encoding import build_encoder
from connector.settings import Settings
from connector.testing.inkit_simulator import InkitSimulator
from tests.integration.harness import (
    ConnectorProcess,
    Deliveries,
    committed,
    connector_env,
    end_offsets,
    identify,
    produce,
    read_all,
    wait_until,
)
from tests.reliability import write_figures

pytestmark = pytest.mark.integration

API_KEY = "zq-api-key-9f3b2c7d51e0"
# Distinctive trait values: any of them in an output is a leak.
TRAITS = {
    "email": "zq-secret-mail-55012@example.com",
    "phone": "+1-555-0199-zq",
    "address_line_1": "zq-secret-street-83721",
    "address_city": "Zqsecretcity",
    "address_state": "TX",
    "address_zip": "73301",
    "address_country": "US",
    "favourite": "zq-secret-custom-4410",
}
# Values too short or too common to scan for without false alarms.
NOT_SCANNED = {"TX", "73301", "US"}
LONG_STREET = "zq-secret-long-street-" + "9" * 60  # over Inkit's 64 characters: refused
CITY_WITHOUT_NAME = "zq-secret-lonely-city-6618"  # address without a name: Inkit answers 422
SECRETS = [API_KEY, LONG_STREET, CITY_WITHOUT_NAME] + [
    v for v in TRAITS.values() if v not in NOT_SCANNED
]


def leaks(text: str, secrets: list[str] = SECRETS) -> list[str]:
    return [s for s in secrets if s in text]


def run_cli(
    args: list[str], env: Mapping[str, str], stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        env={**os.environ, "METRICS_HOST": "127.0.0.1", "METRICS_PORT": "0", **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class Scene:
    """A topic and DLQ, the events of every path, and a connector process."""

    def __init__(
        self,
        bootstrap: str,
        topic_factory: Callable[..., str],
        simulator: InkitSimulator,
        tmp_path: Path,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic_factory(partitions=2)
        self.dlq = topic_factory(partitions=1)
        self.group = f"g-{uuid.uuid4().hex[:8]}"
        self.simulator = simulator
        self.tmp_path = tmp_path
        simulator.set_api_key(API_KEY)

    def env(self, **extra: str) -> dict[str, str]:
        env = connector_env(self.bootstrap, self.topic, self.dlq, self.simulator, self.group)
        return {**env, "INKIT_API_KEY": API_KEY, **extra}

    def produce_all_paths(self) -> set[tuple[str, int]]:
        good = [identify(f"user-{n % 5}", n, **TRAITS) for n in range(40)]
        refused = [
            identify("user-x", 1000, address_line_1=LONG_STREET, address_city="Austin"),
            identify("user-y", 1001, first_name="", last_name="", address_city=CITY_WITHOUT_NAME),
        ]
        landed = produce(self.bootstrap, self.topic, good + refused)
        return {(p.user, p.seq) for p in landed if p.seq < 1000}

    def all_committed(self) -> bool:
        return committed(self.bootstrap, self.group, self.topic, 2) == end_offsets(
            self.bootstrap, self.topic, 2
        )


@pytest.fixture
def scene(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
) -> Scene:
    return Scene(kafka_bootstrap, topic_factory, inkit_simulator, tmp_path)


@pytest.mark.timeout(300)
def test_no_secret_or_trait_value_in_logs_metrics_or_dead_letter_headers(
    scene: Scene, request: pytest.FixtureRequest
) -> None:
    expected = scene.produce_all_paths()
    # JSON logs at DEBUG: the most verbose the connector gets.
    connector = ConnectorProcess(
        scene.env(LOG_FORMAT="json", LOG_LEVEL="DEBUG"), scene.tmp_path, "secrets"
    ).start()
    try:
        wait_until(
            lambda: expected <= Deliveries.of(scene.simulator.requests()).unique(),
            60,
            connector.log_tail(),
        )
        wait_until(scene.all_committed, 30, connector.log_tail())
        # The refused-key path: Inkit rotates the key, the connector pauses and logs it.
        scene.simulator.set_api_key("rotated-key")
        produce(scene.bootstrap, scene.topic, [identify("user-0", 2000, **TRAITS)])
        wait_until(lambda: connector.metric("inkit_connector_auth_blocked") == 1, 30)
        scene.simulator.set_api_key(API_KEY)
        wait_until(lambda: connector.metric("inkit_connector_auth_blocked") == 0, 60)
        wait_until(scene.all_committed, 30, connector.log_tail())
        metrics = connector.get("/metrics")
        assert metrics is not None
        assert connector.stop() == 0
    finally:
        if connector.proc is not None and connector.proc.poll() is None:
            connector.kill()
    log = connector.log_text()
    lines = [line for line in log.splitlines() if line.strip()]
    assert all(json.loads(line) for line in lines), "LOG_FORMAT=json wrote a non-JSON line"
    assert "refused the API key" in log
    assert leaks(log) == []
    assert leaks(metrics.text) == []

    dead = read_all(scene.bootstrap, scene.dlq, timeout_s=10)
    reasons = set()
    for record in dead:
        headers = [(k, (v or b"").decode(errors="replace")) for k, v in record.headers() or []]
        assert leaks(json.dumps(headers)) == [], headers
        reasons.add(dict(headers)["inkit.error.reason"])
    assert len(dead) == 2
    assert "address_line_1_too_long" in reasons  # the mapper refused it
    assert any(h == "inkit.http.response_excerpt" for r in dead for h, _ in r.headers() or [])
    write_figures(
        request,
        "secrets-run",
        {
            "log_lines_scanned": len(lines),
            "metrics_bytes_scanned": len(metrics.text),
            "dead_letters_scanned": len(dead),
            "dead_letter_reasons": sorted(reasons),
            "secrets_scanned": len(SECRETS),
            "leaks": 0,
        },
    )


@pytest.mark.timeout(120)
def test_dry_run_logs_no_secret_and_stops_promptly(scene: Scene) -> None:
    expected = scene.produce_all_paths()
    connector = ConnectorProcess(scene.env(LOG_LEVEL="DEBUG"), scene.tmp_path, "dry-run").start(
        "--dry-run"
    )
    try:
        wait_until(
            lambda: connector.log_text().count("dry run: would POST") >= len(expected),
            60,
            connector.log_tail(),
        )
        assert connector.stop() == 0
    finally:
        if connector.proc is not None and connector.proc.poll() is None:
            connector.kill()
    assert scene.simulator.requests() == []
    assert leaks(connector.log_text()) == []
    # A record that would be dead-lettered must count as finished in a dry run too; otherwise
    # SIGTERM waits the whole DRAIN_TIMEOUT_SECONDS for it (and, once MAX_BUFFERED_RECORDS of
    # them piled up, the dry run would stop reading altogether).
    assert "with 0 record(s) unfinished" in connector.log_text(), connector.log_tail(5)


def test_check_preview_and_configuration_errors_show_no_secret(scene: Scene) -> None:
    env = scene.env(KAFKA_CONFIG_SASL_PASSWORD="zq-sasl-pass-1188")
    secrets = [*SECRETS, "zq-sasl-pass-1188"]
    check = run_cli(["check"], {**env, "KAFKA_CONFIG_SASL_PASSWORD": ""})
    assert check.returncode == 0, check.stdout + check.stderr
    assert leaks(check.stdout + check.stderr, secrets) == []
    assert '"INKIT_API_KEY": "[REDACTED]"' in check.stdout

    # A refused passthrough password is masked in `check`'s printout too (the check then fails:
    # the test broker does not speak SASL).
    masked = run_cli(["check"], {**env, "KAFKA_CONFIG_SECURITY_PROTOCOL": "PLAINTEXT"})
    assert leaks(masked.stdout + masked.stderr, secrets) == []

    # preview prints the request it would send (trait values included: that is its purpose) but
    # never the key; refusals print reason and detail, never the values.
    events = [
        identify("u", 1, **TRAITS),
        identify("u", 2, address_line_1=LONG_STREET, address_city="Austin"),
    ]
    stdin = "\n".join(json.dumps(e) for e in events)
    preview = run_cli(["preview", "--format", "json"], env, stdin)
    assert preview.returncode == 0, preview.stderr
    out = preview.stdout.splitlines()
    assert leaks(preview.stdout + preview.stderr, [API_KEY]) == []
    assert "error" in json.loads(out[1])
    assert leaks(out[1]) == []
    encoded = base64.b64encode(build_encoder("avro").encode(events[1])).decode()
    avro_preview = run_cli(["preview", "--format", "avro"], env, encoded)
    assert leaks(avro_preview.stdout + avro_preview.stderr) == []

    # Configuration errors: one line on stderr, exit 2, no secret.
    for bad in (
        {"INKIT_API_URL": "http://inkit.example.com/integrations/webhook"},
        {"INKIT_MAX_IN_FLIGHT": "zero"},
        {"KAFKA_CONFIG_ENABLE_AUTO_COMMIT": "true"},
        {"INKIT_DESTINATIONS": "[" + API_KEY},
        {
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": API_KEY,
            "KAFKA_VALUE_FORMAT": "confluent-avro",
            "SCHEMA_REGISTRY_URL": "http://127.0.0.1:1",
        },
    ):
        for command in ("run", "check"):
            result = run_cli([command], {**env, **bad})
            assert result.returncode == 2, (bad, result.stderr)
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert leaks(result.stdout + result.stderr, secrets) == [], (bad, result.stderr)


# -- transport rules ------------------------------------------------------------------------------


BASE_ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
    "KAFKA_TOPIC": "identify",
    "KAFKA_VALUE_FORMAT": "avro",
    "INKIT_API_KEY": API_KEY,
}


@pytest.mark.parametrize(
    ("url", "opt_in", "accepted"),
    [
        ("https://inkit.example.com/integrations/webhook", False, True),
        ("http://inkit.example.com/integrations/webhook", False, False),
        ("http://10.0.0.7:8080/integrations/webhook", False, False),
        ("http://inkit.example.com/integrations/webhook", True, True),
        ("http://127.0.0.1:8080/integrations/webhook", False, True),
        ("http://localhost:8080/integrations/webhook", False, True),
        ("http://[::1]:8080/integrations/webhook", False, True),
    ],
)
def test_inkit_url_must_be_https_unless_loopback_or_opted_in(
    url: str, opt_in: bool, accepted: bool
) -> None:
    env = {**BASE_ENV, "INKIT_API_URL": url}
    if opt_in:
        env["INKIT_ALLOW_INSECURE_HTTP"] = "true"
    if accepted:
        assert Settings.from_env(env).inkit_api_url == url
    else:
        with pytest.raises(ConfigError, match="https"):
            Settings.from_env(env)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by itself, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "inkit-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "inkit.pem", directory / "inkit-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TlsInkit:
    """An https stand-in on loopback that accepts every POST (202) and counts them."""

    def __init__(self, cert: Path, key: Path) -> None:
        owner = self
        self.posts = 0

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self.send_response(200)
                self.end_headers()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.posts += 1
                body = b'{"status":"accepted"}'
                self.send_response(202)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/integrations/webhook"

    def __enter__(self) -> TlsInkit:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.timeout(180)
def test_tls_is_verified_by_default_and_a_ca_bundle_makes_it_work(
    scene: Scene, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cert, key = self_signed(tmp_path)
    with TlsInkit(cert, key) as inkit:
        env = scene.env(INKIT_API_URL=inkit.url)
        refused = run_cli(["check"], env)
        assert refused.returncode == 1
        assert "FAIL inkit" in refused.stdout, refused.stdout
        trusted = run_cli(["check"], {**env, "INKIT_CA_BUNDLE": str(cert)})
        assert trusted.returncode == 0, trusted.stdout + trusted.stderr
        assert "ok   inkit" in trusted.stdout

        expected = scene.produce_all_paths()
        untrusting = ConnectorProcess(env, tmp_path, "tls-untrusted").start()
        try:
            wait_until(
                lambda: (
                    untrusting.metric(
                        "inkit_connector_http_requests_total", {"code": "connection_error"}
                    )
                    >= 3
                ),
                60,
                untrusting.log_tail(),
            )
            assert inkit.posts == 0  # nothing went to an unverified server
            assert untrusting.stop() == 0
        finally:
            if untrusting.proc is not None and untrusting.proc.poll() is None:
                untrusting.kill()
        trusting = ConnectorProcess(
            {**env, "INKIT_CA_BUNDLE": str(cert)}, tmp_path, "tls-trusted"
        ).start()
        try:
            # 40 good events and the one with an address but no name (202 here: no validation).
            try:
                wait_until(lambda: inkit.posts >= len(expected) + 1, 60)
            except AssertionError as exc:
                raise AssertionError(
                    f"{exc} {inkit.posts} of {len(expected) + 1} posts; log:\n{trusting.log_tail()}"
                    f"\nUNTRUSTING:\n{untrusting.log_tail(80)}"
                ) from None
            assert trusting.stop() == 0
        finally:
            if trusting.proc is not None and trusting.proc.poll() is None:
                trusting.kill()
    assert leaks(untrusting.log_text() + trusting.log_text()) == []
    write_figures(
        request,
        "secrets-tls",
        {
            "unverified_posts": 0,
            "check_without_ca_exit": refused.returncode,
            "check_with_ca_exit": trusted.returncode,
            "posts_with_ca": inkit.posts,
        },
    )
