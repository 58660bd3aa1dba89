"""The consumer's group timing: a stalled classic rejoin is bounded, a user's setting wins."""

from __future__ import annotations

from connector.kafka.consumer import consumer_config
from connector.settings import Settings

BASE = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "KAFKA_TOPIC": "identify",
    "INKIT_API_KEY": "k",
    "INKIT_TEMPLATE_ID": "tmpl_1",
    "KAFKA_VALUE_FORMAT": "json",
}


def _max_poll(env: dict[str, str], protocol: str | None = "classic") -> int:
    conf = consumer_config(Settings.from_env({**BASE, **env}), print, group_protocol=protocol)
    return int(conf["max.poll.interval.ms"])


def test_the_rebalance_timeout_is_a_minute_not_librdkafkas_five() -> None:
    # The classic protocol sends max.poll.interval.ms as the JoinGroup rebalance timeout: the
    # longest a group waits for a member that stopped rejoining (RELIABILITY.md, open issue 1).
    assert _max_poll({}) == 60_000
    assert _max_poll({}, protocol="consumer") == 60_000


def test_a_long_drain_bound_keeps_its_margin_so_a_drain_never_leaves_the_group() -> None:
    assert _max_poll({"DRAIN_TIMEOUT_SECONDS": "120"}) == 150_000


def test_the_users_setting_wins() -> None:
    assert _max_poll({"KAFKA_CONFIG_MAX_POLL_INTERVAL_MS": "30000"}) == 30_000
