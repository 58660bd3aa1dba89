"""`make demo` (python -m connector.testing.demo) as a user runs it: it finishes with the summary
and exit 0, stops cleanly on Ctrl-C, and leaves no process behind either way."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from connector.testing.demo import API_KEY
from connector.testing.demo_events import (
    SEGMENT_EXAMPLE_USER,
    TEMPLATE_ID,
    build_demo_stream,
    segment_examples,
)

USERS = 50
MARKER = "INKIT_DEMO_TEST_MARKER"


def _start_demo(*args: str) -> tuple[subprocess.Popen[str], str]:
    """The demo in its own process; every process it starts inherits a unique marker."""
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "INKIT_"))}
    env[MARKER] = marker
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.testing.demo", "--users", str(USERS), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, marker


def _remove_workdir(output: str) -> None:
    found = re.search(r"^working directory: (\S+)$", output, re.M)
    if found:
        shutil.rmtree(found.group(1), ignore_errors=True)


def _processes_with(marker: str) -> list[str]:
    """Command lines of live processes whose environment carries the marker."""
    found = []
    needle = f"{MARKER}={marker}".encode()
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            if needle in (proc_dir / "environ").read_bytes():
                found.append((proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:  # gone, or not ours to read
            continue
    return found


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_demo_runs_to_a_summary_and_stops_everything() -> None:
    proc, marker = _start_demo("--no-wait")
    output, _ = proc.communicate(timeout=110)
    _remove_workdir(output)

    assert proc.returncode == 0, output
    stream = build_demo_stream(USERS)
    delivered = stream.expected[("delivered", "ok")]
    assert re.search(rf"^  delivered +{delivered} +ok {delivered}$", output, re.M), output
    assert re.search(rf"^  dead-lettered +{stream.dead_letters} ", output, re.M), output
    assert re.search(r"^  consumer lag +0 +by partition: (p\d=0 ?){6}$", output, re.M), output
    assert re.search(rf"^  dead letters +{stream.dead_letters} +records in", output, re.M)
    assert "done: every record finished and the consumer lag is back to 0" in output
    assert "connector drained and exited 0 on SIGTERM" in output
    assert '"api_token": "[REDACTED]"' in output
    assert f'"segment_user_id": "{SEGMENT_EXAMPLE_USER}"' in output
    assert API_KEY not in output
    for what in ("Inkit simulator", "schema registry", "Kafka"):
        assert f"stopped {what}" in output
    assert _processes_with(marker) == []


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_ctrl_c_mid_way_stops_everything() -> None:
    proc, marker = _start_demo("--no-wait", "--timeout", "60")
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # wait until the connector is delivering
        lines.append(line)
        if "connector up" in line:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=90)
    output = "".join(lines) + rest
    _remove_workdir(output)

    assert proc.returncode == 130, output
    assert "interrupted: stopping everything the demo started" in output
    assert "stopped Kafka" in output
    assert "Traceback" not in output
    assert _processes_with(marker) == []


def test_demo_stream_is_deterministic_and_realistic() -> None:
    stream = build_demo_stream(200)
    assert stream.events == build_demo_stream(200).events
    assert stream.total == sum(stream.expected.values())
    examples = [e["traits"] for e in stream.events if e["userId"] == SEGMENT_EXAMPLE_USER]
    assert examples == segment_examples(TEMPLATE_ID)  # Segment's page, in its order
    for event in stream.events:
        traits = event.get("traits", {})
        address = traits.get("address", {})
        state = traits.get("address_state", address.get("state"))
        zip_code = traits.get("address_zip", address.get("postalCode"))
        if state is not None:
            assert re.fullmatch(r"[A-Z]{2}", state)
        if zip_code is not None and event["userId"].startswith("demo-user-"):
            assert re.fullmatch(r"[0-9]{5}", zip_code)
        if "email" in traits and event["userId"] != SEGMENT_EXAMPLE_USER:
            assert traits["email"].endswith("@example.com")
    kinds = {e["type"] for e in stream.events}
    assert kinds == {"identify", "track", "page"}
    assert stream.expected[("skipped", "integration_disabled")] > 0
