"""Which environment variables get a "not a setting" warning, and which closest name it offers."""

from __future__ import annotations

import io

from connector.cli.unknown_env import unknown_variables, warn_unknown_variables


def test_misspellings_of_our_settings_name_the_closest_one() -> None:
    found = dict(
        unknown_variables(
            {
                "INKIT_MAX_INFLIGHT": "8",
                "KAFKA_BOOTSTRAP_SERVER": "x",
                "SCHEMA_REGISTRY_URI": "x",
                "BREAKER_MIN_FAILURE": "3",
                "INKIT_COLOUR": "blue",
            }
        )
    )
    assert found == {
        "INKIT_MAX_INFLIGHT": "INKIT_MAX_IN_FLIGHT",
        "KAFKA_BOOTSTRAP_SERVER": "KAFKA_BOOTSTRAP_SERVERS",
        "SCHEMA_REGISTRY_URI": "SCHEMA_REGISTRY_URL",
        "BREAKER_MIN_FAILURE": "BREAKER_MIN_FAILURES",
        "INKIT_COLOUR": None,
    }


def test_settings_passthrough_other_software_and_kubernetes_service_links_are_quiet() -> None:
    env = {
        "INKIT_MAX_IN_FLIGHT": "8",
        "KAFKA_CONFIG_SASL_MECHANISM": "PLAIN",
        "KAFKA_HEAP_OPTS": "-Xmx1g",
        "INKIT_CONNECTOR_CACHE": "/tmp/c",  # the test tooling's cache
        "KAFKA_SERVICE_HOST": "10.0.0.1",  # a Service `kafka` in the namespace
        "KAFKA_PORT": "tcp://10.0.0.1:9092",
        "KAFKA_PORT_9092_TCP_ADDR": "10.0.0.1",
        "SCHEMA_REGISTRY_SERVICE_PORT_HTTP": "8081",
        "PATH": "/bin",
    }
    assert unknown_variables(env) == []


def test_the_warning_names_the_variable_never_its_value() -> None:
    out = io.StringIO()
    warn_unknown_variables({"INKIT_API_KEYS": "s3cret"}, out)
    assert out.getvalue() == (
        "inkit-connector: warning: INKIT_API_KEYS is not a setting and is ignored; "
        "did you mean INKIT_API_KEY?\n"
    )
