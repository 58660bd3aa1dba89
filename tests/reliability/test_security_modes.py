"""Each security mode of real clusters against the real broker: SASL_SSL with SCRAM-SHA-512 and
with PLAIN, and mutual TLS, with a throwaway CA. `produce`, `check`, `run` and the dead-letter
path work over each; each way a secured connection fails gives one clear line and a non-zero
exit within seconds, with no secret in the output."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from connector.testing.inkit_simulator import InkitSimulator
from connector.testing.kafka_broker import KafkaBroker
from connector.testing.kafka_security import SecurityMode, client_settings_env
from connector.testing.tls_material import TlsFiles
from tests.fixtures.kafka import SECURE_USERS
from tests.integration.harness import (
    ConnectorProcess,
    Deliveries,
    dlq_headers,
    identify,
    read_all,
    wait_until,
)
from tests.reliability import Stopwatch, write_figures
from tests.reliability.secure_clients import FAIL_FAST_BOUND_S, cli, new_topics, secure_env

pytestmark = pytest.mark.integration

PASSWORD = SECURE_USERS["svc-inkit"]
WRONG_PASSWORD = "not-the-password-9913"
EVENTS = 30
WORKING_MODES = [SecurityMode.SASL_SSL_SCRAM, SecurityMode.SASL_SSL_PLAIN, SecurityMode.MTLS]


@pytest.mark.parametrize("mode", WORKING_MODES, ids=str)
def test_produce_check_run_and_dead_letters_over_each_mode(
    secure_broker: KafkaBroker,
    inkit_simulator: InkitSimulator,
    mode: SecurityMode,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    topic = new_topics(secure_broker)
    group = f"g-{uuid.uuid4().hex[:8]}"
    env = secure_env(secure_broker, mode, inkit_simulator, topic, group)
    events = [identify(f"{mode}-u{n % 5}", n) for n in range(EVENTS)]
    refused = identify(f"{mode}-refused", 0)
    del refused["traits"]["template_id"]  # the mapper refuses it: a dead letter
    lines = "".join(json.dumps(e) + "\n" for e in [*events, refused])

    produced = cli(["produce"], env, stdin=lines)
    assert produced.returncode == 0, produced.stdout + produced.stderr
    assert f"produced {EVENTS + 1} record(s)" in produced.stdout

    checked = cli(["check"], env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"ok   kafka: reachable at {secure_broker.address(mode)}" in checked.stdout

    connector = ConnectorProcess(env, tmp_path, name=f"secure-{mode}").start()
    try:
        expected = {(e["traits"]["test_user"], e["traits"]["test_seq"]) for e in events}
        wait_until(
            lambda: expected <= Deliveries.of(inkit_simulator.requests()).unique(),
            60,
            connector.log_tail(),
        )
        dead = read_all(secure_broker.bootstrap_servers, f"{topic}.dlq", timeout_s=30)
        assert [dlq_headers(r)["inkit.error.reason"] for r in dead] == ["missing_template_id"]
        assert connector.stop() == 0
    finally:
        if connector.proc is not None and connector.proc.poll() is None:
            connector.kill()
    output = produced.stdout + produced.stderr + checked.stdout + connector.log_text()
    assert PASSWORD not in output
    write_figures(request, f"security-mode-{mode}", {"mode": str(mode), "events": EVENTS})


def _wrong_password(tls: TlsFiles) -> dict[str, str]:
    return {"sasl.password": WRONG_PASSWORD}


# (listener, settings changed from a correct client's, words the one line must contain)
FAILURES: dict[str, tuple[SecurityMode, Callable[[TlsFiles], dict[str, str]], str]] = {
    "scram-wrong-password": (
        SecurityMode.SASL_SSL_SCRAM,
        _wrong_password,
        "authentication failed",
    ),
    "plain-wrong-password": (
        SecurityMode.SASL_SSL_PLAIN,
        _wrong_password,
        "authentication failed",
    ),
    "unknown-ca": (
        SecurityMode.SASL_SSL_SCRAM,
        lambda tls: {"ssl.ca.location": str(tls.other_ca)},
        "not signed by a trusted ca",
    ),
    "expired-certificate": (SecurityMode.TLS_EXPIRED, lambda tls: {}, "has expired"),
    "wrong-host-certificate": (SecurityMode.TLS_WRONG_HOST, lambda tls: {}, "not valid for host"),
    "client-certificate-missing": (
        SecurityMode.MTLS,
        lambda tls: {"ssl.certificate.location": "", "ssl.key.location": ""},
        "refused the client certificate",
    ),
}


# `check` and `run` meet every failure; `produce` shares their detection (the librdkafka error
# callback), so two failures of different kinds cover it and keep the suite's wall time down.
CASES = [(f, c) for f in FAILURES for c in ("check", "run")]
CASES += [("scram-wrong-password", "produce"), ("unknown-ca", "produce")]


@pytest.mark.parametrize(("failure", "command"), CASES)
def test_each_failure_gives_one_clear_line_fast(
    secure_broker: KafkaBroker,
    tls_files: TlsFiles,
    inkit_simulator: InkitSimulator,
    failure: str,
    command: str,
    request: pytest.FixtureRequest,
) -> None:
    mode, change, words = FAILURES[failure]
    env = secure_env(secure_broker, mode, inkit_simulator, "no-topic-needed", "g-fail")
    env |= client_settings_env(change(tls_files))
    env = {k: v for k, v in env.items() if v}
    clock = Stopwatch()
    result = cli([command], env, stdin=json.dumps(identify("u", 1)) + "\n")
    seconds = clock()
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert seconds < FAIL_FAST_BOUND_S
    if command == "check":
        line = next(line for line in result.stdout.splitlines() if line.startswith("FAIL kafka"))
    else:
        line = result.stderr.strip().splitlines()[-1]
        assert line.startswith("inkit-connector:"), output[-2000:]
    assert words in line.lower(), output[-2000:]
    for secret in (PASSWORD, WRONG_PASSWORD):
        assert secret not in output
    write_figures(
        request,
        f"security-failure-{failure}-{command}",
        {
            "failure": failure,
            "command": command,
            "exit_code": result.returncode,
            "seconds": round(seconds, 2),
            "line": line,
        },
    )
