"""The README's cluster recipes (Confluent Cloud, MSK SCRAM and mTLS, Aiven) are real: each
values block renders with the chart, its certificate files come from a Secret volume, and the
container environment it produces passes `inkit-connector check` against the test broker's
listener of the same kind. What the test must replace is replaced explicitly: the bootstrap
address, the topics, the Inkit URL, Secret values, files under the Secret mount (by file name),
and the CA where the recipe relies on public CAs (the test broker's CA is a throwaway one)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.testing.inkit_simulator import InkitSimulator
from connector.testing.kafka_broker import KafkaBroker
from connector.testing.kafka_security import SecurityMode
from connector.testing.tls_material import TlsFiles
from tests.fixtures.kafka import SECURE_USERS
from tests.helm.conftest import MINIMAL, Rendered, RenderFn, merge
from tests.reliability.secure_clients import cli, new_topics

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
RECIPE = re.compile(r"<!-- cluster-recipe: (\S+) mode=(\S+) -->\s*```yaml\n(.*?)```", re.DOTALL)
RECIPES = {
    name: (SecurityMode(mode), yaml.safe_load(body))
    for name, mode, body in RECIPE.findall(README.read_text())
}
USER, PASSWORD = next(iter(SECURE_USERS.items()))


def test_the_readme_has_the_four_recipes() -> None:
    assert set(RECIPES) == {"confluent-cloud", "msk-scram", "msk-mtls", "aiven"}


def container_env(rendered: Rendered, tls: TlsFiles) -> dict[str, str]:
    """The connector container's environment, Secret references resolved to test values and
    files under Secret mounts to the test's TLS files."""
    env = dict(rendered.config)
    for item in rendered.container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        env[item["name"]] = {"username": USER, "password": PASSWORD}.get(ref["key"], "test-api-key")
    pod = rendered.deployment["spec"]["template"]["spec"]
    secret_volumes = {v["name"] for v in pod.get("volumes", []) if "secret" in v}
    mounts = [m for m in rendered.container.get("volumeMounts", []) if m["name"] in secret_volumes]
    files = {"ca.pem": tls.ca, "client.pem": tls.client_cert, "client.key": tls.client_key}
    for name, value in env.items():
        if name.startswith("KAFKA_CONFIG_SSL_") and name.endswith("_LOCATION"):
            path = Path(value)
            assert any(path.parent == Path(m["mountPath"]) for m in mounts), (
                f"{name}={value} is not a file of a mounted Secret"
            )
            env[name] = str(files[path.name])
    return env


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_renders_and_passes_check_against_the_broker(
    recipe: str,
    render: RenderFn,
    secure_broker: KafkaBroker,
    tls_files: TlsFiles,
    inkit_simulator: InkitSimulator,
) -> None:
    mode, values = RECIPES[recipe]
    rendered = render(merge(MINIMAL, values))
    env = container_env(rendered, tls_files)
    assert env["KAFKA_CONFIG_SECURITY_PROTOCOL"] in ("SASL_SSL", "SSL")
    # The test broker's CA is private; recipes for clusters with public CAs do not name one.
    env.setdefault("KAFKA_CONFIG_SSL_CA_LOCATION", str(tls_files.ca))
    topic = new_topics(secure_broker)
    test_env: dict[str, Any] = {
        **env,
        "KAFKA_BOOTSTRAP_SERVERS": secure_broker.address(mode),
        "KAFKA_TOPIC": topic,
        "KAFKA_DLQ_TOPIC": f"{topic}.dlq",
        "KAFKA_VALUE_FORMAT": "avro",  # the registry has its own test (test_secure_registry.py)
        "SCHEMA_REGISTRY_URL": "",
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "",
        "INKIT_API_URL": inkit_simulator.webhook_url,
    }
    result = cli(["check"], {k: v for k, v in test_env.items() if v})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok   kafka: reachable at {secure_broker.address(mode)}" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
