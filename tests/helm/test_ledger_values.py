"""The chart's sent-ledger values (issue #15) reach the connector's environment, the rendered
environment is one the connector accepts, and the combinations it would refuse fail at render."""

from __future__ import annotations

from connector.settings import Settings
from tests.helm.conftest import MINIMAL, FailFn, RenderFn, merge

REQUIRED = {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_TOPIC": "t", "INKIT_API_KEY": "x"}


def settings_of(config: dict[str, str]) -> Settings:
    return Settings.from_env({**config, **REQUIRED, "KAFKA_VALUE_FORMAT": "json"})


def test_defaults_keep_the_ledger_on_and_resend_ambiguous_sends(render: RenderFn) -> None:
    config = render(MINIMAL).config
    assert config["LEDGER_ENABLED"] == "true"
    assert config["DEDUPE_WINDOW_HOURS"] == "720"
    assert config["AMBIGUOUS_SEND_POLICY"] == "resend"
    assert "KAFKA_LEDGER_TOPIC" not in config  # the connector's default: <topic>.sent
    assert "MAX_EVENT_AGE_HOURS" not in config
    settings = settings_of(config)
    assert settings.ledger_enabled
    assert settings.ledger_topic == "t.sent"
    assert settings.max_event_age_s is None


def test_ledger_values_are_wired(render: RenderFn) -> None:
    values = {
        "ledger": {"enabled": True, "topic": "letters.sent", "dedupeWindowHours": 48},
        "maxEventAgeHours": 2.5,
        "inkit": {"ambiguousSendPolicy": "dead-letter"},
    }
    settings = settings_of(render(merge(MINIMAL, values)).config)
    assert settings.ledger_topic == "letters.sent"
    assert settings.dedupe_window_s == 48 * 3600
    assert settings.max_event_age_s == 2.5 * 3600
    assert settings.ambiguous_send_policy == "dead-letter"


def test_dead_letter_policy_without_the_ledger_fails_at_render(render_fails: FailFn) -> None:
    values = {"ledger": {"enabled": False}, "inkit": {"ambiguousSendPolicy": "dead-letter"}}
    assert "needs ledger.enabled=true" in render_fails(merge(MINIMAL, values))


def test_an_unknown_policy_is_refused_by_the_schema(render_fails: FailFn) -> None:
    message = render_fails(merge(MINIMAL, {"inkit": {"ambiguousSendPolicy": "maybe"}}))
    assert "ambiguousSendPolicy" in message


def test_the_ledger_topic_must_not_be_the_source_topic(render_fails: FailFn) -> None:
    values = {"kafka": {"topic": "identify"}, "ledger": {"topic": "identify"}}
    assert "ledger.topic must differ" in render_fails(merge(MINIMAL, values))
