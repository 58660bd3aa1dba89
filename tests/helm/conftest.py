"""Fixtures for the chart tests: the real helm binary, rendering helpers and the ci/ values files.

helm-unittest cannot be installed here, so the tests render the chart with `helm template` and
assert on the parsed YAML. helm comes from `scripts/install-helm.sh` (.tools/bin/helm); a missing
binary fails the tests, it never skips them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "inkit-connector"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
HELM = ROOT / ".tools" / "bin" / "helm"
CRD_APIS = ("monitoring.coreos.com/v1", "keda.sh/v1alpha1")
RELEASE = "inkit-connector"

# The smallest values that render: what every install must give.
# Default values plus only what a user must bring: an image and an API key.
MINIMAL: dict[str, Any] = {
    "image": {"repository": "registry.example.com/inkit-connector"},
    "inkit": {"existingSecret": "inkit-connector"},
}


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge, as Helm merges values files (override wins; dicts merge key by key)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class Rendered:
    """The documents of one `helm template` run, with lookups by kind."""

    docs: list[dict[str, Any]]
    text: str

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name_suffix: str = "") -> dict[str, Any]:
        found = [d for d in self.all(kind) if d["metadata"]["name"].endswith(name_suffix)]
        assert len(found) == 1, f"expected one {kind} ending in {name_suffix!r}, got {len(found)}"
        return found[0]

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def container(self) -> dict[str, Any]:
        containers = self.deployment["spec"]["template"]["spec"]["containers"]
        return next(c for c in containers if c["name"] == "connector")

    @property
    def config(self) -> dict[str, str]:
        """The ConfigMap the container reads with envFrom."""
        name = self.container["envFrom"][0]["configMapRef"]["name"]
        cm = next(d for d in self.all("ConfigMap") if d["metadata"]["name"] == name)
        return dict(cm["data"])


@dataclass(frozen=True)
class Helm:
    """Runs the real helm binary with its own cache/config/data homes."""

    env: dict[str, str]

    def run(self, *args: str | Path, check: bool = False) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(HELM), *map(str, args)], capture_output=True, text=True, env=self.env, timeout=60
        )
        if check and proc.returncode != 0:
            pytest.fail(f"helm {' '.join(map(str, args))} failed:\n{proc.stderr}")
        return proc


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    if not (HELM.is_file() and os.access(HELM, os.X_OK)):
        pytest.fail(f"{HELM} is missing: run scripts/install-helm.sh (or make tools)")
    home = tmp_path_factory.mktemp("helm-home")
    env = dict(os.environ)
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(home / var.lower())
    version = Helm(env).run("version", "--short", check=True).stdout
    assert version.startswith("v3."), version
    return Helm(env)


RenderFn = Callable[..., Rendered]
FailFn = Callable[..., str]


def _template_args(
    tmp: Path,
    values: dict[str, Any] | None,
    files: tuple[Path, ...],
    chart: Path,
    crds: bool,
    extra: tuple[str, ...],
) -> list[str | Path]:
    args: list[str | Path] = ["template", RELEASE, chart, "--namespace", "connectors"]
    for f in files:
        args += ["-f", f]
    if values is not None:
        path = tmp / f"values-{len(list(tmp.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump(values))
        args += ["-f", path]
    if crds:
        for api in CRD_APIS:
            args += ["--api-versions", api]
    return [*args, *extra]


@pytest.fixture
def render(helm: Helm, tmp_path: Path) -> RenderFn:
    """render(values=None, *files, chart=CHART, crds=True, extra=()) -> Rendered (must succeed)."""

    def _render(
        values: dict[str, Any] | None = None,
        *files: Path,
        chart: Path = CHART,
        crds: bool = True,
        extra: tuple[str, ...] = (),
    ) -> Rendered:
        proc = helm.run(*_template_args(tmp_path, values, files, chart, crds, extra), check=True)
        docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
        return Rendered(docs, proc.stdout)

    return _render


@pytest.fixture
def render_fails(helm: Helm, tmp_path: Path) -> FailFn:
    """render_fails(values, *files, ...) -> helm's error text (rendering must fail)."""

    def _fails(
        values: dict[str, Any] | None = None,
        *files: Path,
        chart: Path = CHART,
        crds: bool = True,
        extra: tuple[str, ...] = (),
    ) -> str:
        proc = helm.run(*_template_args(tmp_path, values, files, chart, crds, extra))
        assert proc.returncode != 0, f"rendering should have failed:\n{proc.stdout[:2000]}"
        return proc.stderr

    return _fails


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    """A scratch copy of the chart, for tests that edit Chart.yaml or add templates."""
    dest = tmp_path / "chart" / "inkit-connector"
    shutil.copytree(CHART, dest)
    return dest
