"""Configuration is validated at start-up with one clear line per mistake."""

import pytest

from connector.errors import ConfigError
from connector.models import InkitMode
from connector.settings import DEFAULT_RENDER_URL, SETTINGS, Settings

BASE = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "KAFKA_TOPIC": "identify",
    "KAFKA_VALUE_FORMAT": "avro",
    "INKIT_API_KEY": "k",
}


def load(**overrides: str) -> Settings:
    env = {**BASE, **overrides}
    return Settings.from_env({k: v for k, v in env.items() if v != "<unset>"})


def test_defaults() -> None:
    s = load()
    assert s.group_id == "inkit-connector"
    assert s.dlq_topic == "identify.dlq"
    assert s.inkit_mode is InkitMode.WEBHOOK
    assert s.inkit_api_url == "https://internal.inkit.io/integrations/webhook"
    assert s.max_in_flight == 64
    assert s.max_buffered_records == 1000
    assert s.retry_max_s == 14400
    assert s.ambiguous_send_policy == "resend"
    assert load(AMBIGUOUS_SEND_POLICY="dead-letter").ambiguous_send_policy == "dead-letter"


def test_render_mode_has_its_own_default_url() -> None:
    assert load(INKIT_MODE="render").inkit_api_url == DEFAULT_RENDER_URL


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"KAFKA_TOPIC": "<unset>"}, "KAFKA_TOPIC is required"),
        ({"INKIT_API_KEY": "<unset>"}, "INKIT_API_KEY is required"),
        ({"KAFKA_VALUE_FORMAT": "xml"}, "KAFKA_VALUE_FORMAT must be one of"),
        ({"KAFKA_VALUE_FORMAT": "confluent-avro"}, "needs SCHEMA_REGISTRY_URL"),
        ({"INKIT_MAX_IN_FLIGHT": "0"}, "INKIT_MAX_IN_FLIGHT must be between"),
        ({"INKIT_MAX_IN_FLIGHT": "many"}, "must be a whole number"),
        ({"INKIT_TIMEOUT_SECONDS": "-1"}, "INKIT_TIMEOUT_SECONDS must be between"),
        ({"INKIT_MODE": "fax"}, "INKIT_MODE must be one of"),
        (
            {"INKIT_RATE_LIMIT_SCOPE": "group"},
            "INKIT_RATE_LIMIT_SCOPE=group needs INKIT_RATE_LIMIT",
        ),
        ({"INKIT_RATE_LIMIT_SCOPE": "cluster"}, "INKIT_RATE_LIMIT_SCOPE must be one of"),
        ({"INKIT_RATE_LIMIT_ADAPTIVE": "true"}, "INKIT_RATE_LIMIT_ADAPTIVE=true needs"),
        (
            {
                "INKIT_RATE_LIMIT": "5",
                "INKIT_RATE_LIMIT_ADAPTIVE": "1",
                "INKIT_RATE_LIMIT_MIN": "9",
            },
            "INKIT_RATE_LIMIT_MIN must not exceed",
        ),
        ({"INKIT_API_URL": "http://inkit.example.com/hook"}, "must use https"),
        ({"INKIT_API_URL": "ftp://x"}, "must be an http(s) URL"),
        ({"INKIT_DESTINATIONS": "[1]"}, "INKIT_DESTINATIONS must be a JSON object"),
        ({"KAFKA_CONFIG_ENABLE_AUTO_COMMIT": "true"}, "cannot be set"),
        ({"KAFKA_CONFIG_ENABLE_AUTO_OFFSET_STORE": "true"}, "cannot be set"),
        ({"KAFKA_DLQ_TOPIC": "identify"}, "must differ"),
        ({"INKIT_REQUIRE_FULL_ADDRESS": "maybe"}, "must be true or false"),
        ({"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "nocolon"}, "user:password"),
        ({"AMBIGUOUS_SEND_POLICY": "drop"}, "AMBIGUOUS_SEND_POLICY must be one of"),
        (
            {"AMBIGUOUS_SEND_POLICY": "dead-letter", "LEDGER_ENABLED": "false"},
            "AMBIGUOUS_SEND_POLICY=dead-letter needs LEDGER_ENABLED=true",
        ),
    ],
)
def test_bad_configuration_is_one_clear_line(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load(**overrides)
    assert message in excinfo.value.detail
    assert "\n" not in str(excinfo.value)


def test_http_is_allowed_for_loopback_or_with_an_explicit_opt_in() -> None:
    assert load(INKIT_API_URL="http://127.0.0.1:8080/hook").inkit_api_url.startswith("http:")
    assert load(INKIT_API_URL="http://localhost:8080/hook")
    assert load(INKIT_API_URL="http://inkit.internal/hook", INKIT_ALLOW_INSECURE_HTTP="true")


def test_librdkafka_passthrough() -> None:
    s = load(KAFKA_CONFIG_SECURITY_PROTOCOL="SASL_SSL", KAFKA_CONFIG_SASL_PASSWORD="pw")
    assert s.kafka_extra == {"security.protocol": "SASL_SSL", "sasl.password": "pw"}
    assert s.librdkafka_common()["security.protocol"] == "SASL_SSL"


def test_redacted_configuration_hides_every_secret() -> None:
    s = load(
        INKIT_API_KEY="the-api-key",
        KAFKA_CONFIG_SASL_PASSWORD="kafka-pw",
        SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO="u:registry-pw",
    )
    text = repr(s.redacted()) + repr(s)
    for secret in ("the-api-key", "kafka-pw", "registry-pw"):
        assert secret not in text


def test_dry_run_needs_no_key() -> None:
    env = {k: v for k, v in BASE.items() if k != "INKIT_API_KEY"}
    assert Settings.from_env(env, require_api_key=False).inkit_api_key is None


def test_every_setting_is_documented_once() -> None:
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    redacted = load().redacted()
    for name in names:
        if name in ("KAFKA_CONFIG_<NAME>", "INKIT_ALLOW_INSECURE_HTTP"):
            continue
        assert name in redacted, name
