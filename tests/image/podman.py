"""podman, run the way these machines need it, and what `scripts/build-image.sh` reports."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "build-image.sh"
# The test image gets its own tag, so `make test` never replaces the one `make image` built.
TEST_IMAGE = "localhost/inkit-connector:test"
# crun refuses this sandbox's hybrid cgroup layout and the default rlimits are refused: the same
# flags as scripts/build-image.sh (docs/container.md), overridable through PODMAN.
PODMAN = shlex.split(os.environ.get("PODMAN", "podman --runtime runc --cgroup-manager=cgroupfs"))
ULIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
# A cold build (the Debian base assembled, every wheel downloaded) took about 100 s on a quiet
# machine and 611 s at a load average of 30 to 48 on its two cores: the image tests get a longer
# timeout than the suite's default 300 s (the first one pays for the build).
BUILD_TIMEOUT_S = 900
# What the chart's securityContext enforces (readOnlyRootFilesystem, drop ALL, no privilege
# escalation, an emptyDir on /tmp). --read-only-tmpfs=false: podman would otherwise also mount
# writable tmpfs on /run and /var/tmp, and the tests want a write there to fail.
RESTRICTED = [
    "--read-only",
    "--read-only-tmpfs=false",
    "--tmpfs",
    "/tmp:rw,size=64m,mode=1777",
    "--cap-drop=all",
    "--security-opt=no-new-privileges",
]


def podman(
    *args: str, timeout_s: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run podman; a missing podman fails the test (make tools installs it), never skips it."""
    if shutil.which(PODMAN[0]) is None:
        pytest.fail(f"{PODMAN[0]} is missing: run `make tools` (scripts/install-podman.sh)")
    proc = subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
    return proc


def run_in_image(
    image: str, *args: str, entrypoint: str | None = None, options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`podman run --rm` of the image with the chart's restrictions; returns without checking."""
    extra = ["--entrypoint", entrypoint] if entrypoint else []
    # --no-healthcheck: a one-off command needs no HEALTHCHECK timer (podman's timers want systemd).
    return podman(
        "run", "--rm", "--no-healthcheck", *ULIMITS, *RESTRICTED, *options, *extra, image, *args,
        check=False,
    )  # fmt: skip


@dataclass(frozen=True)
class BuiltImage:
    """The image `scripts/build-image.sh` built, and what it printed about it."""

    name: str
    base: str
    size_bytes: int
    sbom: Path
    output: str


def build_image(
    name: str = TEST_IMAGE, base: str | None = None, timeout_s: float = BUILD_TIMEOUT_S
) -> BuiltImage:
    """Build with the same script as `make image` (on ``base`` when given) and parse its report."""
    env = {**os.environ, "IMAGE": name}
    env.pop("PYTHON_IMAGE", None)
    if base is not None:
        env["PYTHON_IMAGE"] = base
    # Its own process group: a timeout (ours or pytest-timeout's) stops mmdebstrap and podman
    # too, not only the script, so that no orphan keeps writing into the cache.
    with subprocess.Popen(
        [str(BUILD_SCRIPT)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    if proc.returncode != 0:
        pytest.fail(f"make image failed ({proc.returncode}):\n{stdout}\n{stderr[-4000:]}")
    report = dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)
    return BuiltImage(
        name=report["image"],
        base=report["base"].split(" ", 1)[0],
        size_bytes=int(report["size"].split(" ", 1)[0]),
        sbom=ROOT / report["sbom"],
        output=stdout,
    )
