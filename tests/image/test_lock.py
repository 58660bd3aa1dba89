"""The image's hashed locks (`make lock`) cover what pyproject.toml asks for. Offline: a drift
between pyproject and the locks fails here rather than in the image build."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.image.podman import ROOT

LOCKS = ROOT / "requirements"


def pins(lock: str) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of a uv/pip-compile lock file."""
    text = (LOCKS / lock).read_text()
    entries = re.findall(
        r"^([A-Za-z0-9_.-]+)==(\S+)((?: \\\n\s+--hash=sha256:[0-9a-f]{64})+)", text, re.MULTILINE
    )
    blocks = re.findall(r"^[A-Za-z0-9_.-]+==", text, re.MULTILINE)
    assert len(entries) == len(blocks), f"{lock}: every pin needs at least one sha256 hash"
    return {canonicalize_name(n): (v, hashes.count("--hash")) for n, v, hashes in entries}


def assert_covered(requirements: list[str], locked: dict[str, tuple[str, int]], lock: str) -> None:
    for line in requirements:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in {lock}: run `make lock`"
        assert requirement.specifier.contains(locked[name][0], prereleases=True), (
            f"{lock} pins {name}=={locked[name][0]}, outside {requirement.specifier}: `make lock`"
        )


def test_the_runtime_lock_pins_every_dependency_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    locked = pins("image.lock")
    assert_covered(project["project"]["dependencies"], locked, "image.lock")
    # confluent-kafka ships librdkafka in a wheel per platform: a multi-arch build needs them all.
    assert locked["confluent-kafka"][1] >= 4


def test_the_build_lock_pins_the_build_backend_and_the_sbom_tool() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = [
        line.split("#")[0].strip()
        for line in (LOCKS / "image-build.in").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    locked = pins("image-build.lock")
    assert_covered(wanted + project["build-system"]["requires"], locked, "image-build.lock")
