"""Every environment variable the connector reads: its name, default and what it does.

The README's configuration table is generated from ``SETTINGS`` (``python -m connector.cli.docs``)
and a test checks that ``Settings.from_env`` reads exactly these names."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_WEBHOOK_URL = "https://internal.inkit.io/integrations/webhook"
DEFAULT_RENDER_URL = "https://api.inkit.com/v1/render"


@dataclass(frozen=True, slots=True)
class SettingDoc:
    """One environment variable: its name, default (as text) and what it does."""

    name: str
    default: str
    help: str


SETTINGS: tuple[SettingDoc, ...] = (
    SettingDoc("KAFKA_BOOTSTRAP_SERVERS", "(required)", "Kafka brokers, `host:port[,host:port]`."),
    SettingDoc("KAFKA_TOPIC", "(required)", "Topic of Segment Identify events to consume."),
    SettingDoc("KAFKA_GROUP_ID", "inkit-connector", "Consumer group id."),
    SettingDoc(
        "KAFKA_DLQ_TOPIC",
        "`<KAFKA_TOPIC>.dlq`",
        "Dead-letter topic for records that can never succeed. Must exist (see `check`).",
    ),
    SettingDoc(
        "KAFKA_VALUE_FORMAT",
        "confluent-avro",
        "`confluent-avro` (Schema Registry wire format, any Segment-shaped writer schema), "
        "`avro` (bare Avro), `json` (Segment's JSON) or `confluent-json` (Schema Registry "
        "JSON Schema wire format).",
    ),
    SettingDoc(
        "AVRO_SCHEMA_FILE",
        "",
        "Writer schema (`.avsc`) of a bare `avro` topic; unset, the bundled schema is used.",
    ),
    SettingDoc(
        "KAFKA_CONFIG_<NAME>",
        "",
        "librdkafka passthrough for consumer and dead-letter producer: "
        "`KAFKA_CONFIG_SASL_MECHANISM=PLAIN` sets `sasl.mechanism` (lower-cased, `_` becomes "
        "`.`). Offset-commit settings are refused.",
    ),
    SettingDoc(
        "SCHEMA_REGISTRY_URL",
        "",
        "Schema Registry base URL; required for `confluent-avro` and `confluent-json`.",
    ),
    SettingDoc(
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
        "",
        "`user:password` for the Schema Registry (secret).",
    ),
    SettingDoc(
        "INKIT_API_KEY", "(required)", "Inkit API key (secret). Not needed with `--dry-run`."
    ),
    SettingDoc("INKIT_MODE", "webhook", "`webhook` (Segment's destination) or `render` (v1 API)."),
    SettingDoc(
        "INKIT_API_URL",
        "by mode",
        f"Endpoint. Defaults: webhook `{DEFAULT_WEBHOOK_URL}`, render `{DEFAULT_RENDER_URL}`. "
        "Must be https unless the host is loopback or `INKIT_ALLOW_INSECURE_HTTP=true`.",
    ),
    SettingDoc(
        "INKIT_TEMPLATE_ID", "", "Template id used when an event has no `template_id` trait."
    ),
    SettingDoc(
        "INKIT_DESTINATIONS", "", "render mode: JSON object sent as `destinations` on every render."
    ),
    SettingDoc(
        "INKIT_REQUIRE_FULL_ADDRESS",
        "false",
        "Physical mail: dead-letter events without name, address line 1, city and country "
        "(and state and ZIP for US addresses).",
    ),
    SettingDoc(
        "INKIT_SEND_AUDIENCE_EXITS",
        "false",
        "Send Engage audience exits (else skipped: `audience_exit`).",
    ),
    SettingDoc("INKIT_MAX_IN_FLIGHT", "64", "Most requests in flight at once, across partitions."),
    SettingDoc("INKIT_RATE_LIMIT", "", "Most requests per second (token bucket); unset: no limit."),
    SettingDoc(
        "INKIT_RATE_LIMIT_SCOPE",
        "pod",
        "`pod`: INKIT_RATE_LIMIT holds for each process. `group`: for the whole consumer group; "
        "each member takes its assigned partitions' share of it (see Rate limits).",
    ),
    SettingDoc(
        "INKIT_RATE_LIMIT_ADAPTIVE",
        "false",
        "Find Inkit's limit: start at INKIT_RATE_LIMIT, step down ×0.8 on 429s, probe up "
        "while requests succeed (AIMD).",
    ),
    SettingDoc(
        "INKIT_RATE_LIMIT_MIN", "1", "Adaptive mode: the lowest rate it steps down to (requests/s)."
    ),
    SettingDoc(
        "INKIT_RATE_LIMIT_PROBE_STEP",
        "`INKIT_RATE_LIMIT / 100`",
        "Adaptive mode: requests/s added to the rate per second without a 429.",
    ),
    SettingDoc("INKIT_TIMEOUT_SECONDS", "10", "Timeout of one HTTP request."),
    SettingDoc(
        "INKIT_RETRY_MAX_SECONDS",
        "14400",
        "How long a record is retried (5xx, 429, timeouts) before it is dead-lettered "
        "(Segment: 4 h).",
    ),
    SettingDoc(
        "INKIT_ALLOW_INSECURE_HTTP",
        "false",
        "Allow an `http://` INKIT_API_URL on a non-loopback host.",
    ),
    SettingDoc(
        "INKIT_CA_BUNDLE", "", "PEM file of CAs to trust for Inkit (TLS is always verified)."
    ),
    SettingDoc("METRICS_PORT", "9464", "Port of `/metrics`, `/healthz` and `/readyz`."),
    SettingDoc("METRICS_HOST", "0.0.0.0", "Address that port binds to."),  # noqa: S104
    SettingDoc(
        "DRAIN_TIMEOUT_SECONDS",
        "20",
        "On SIGTERM or revoke: how long in-flight requests may finish before the connector commits "
        "and exits. Keep it below Kubernetes' `terminationGracePeriodSeconds`.",
    ),
    SettingDoc("COMMIT_INTERVAL_SECONDS", "1", "Least time between two throttled offset commits."),
    SettingDoc(
        "MAX_BUFFERED_RECORDS",
        "`max(1000, 8 × INKIT_MAX_IN_FLIGHT)`",
        "Records fetched but not yet sent; above it, partitions are paused (bounds memory).",
    ),
    SettingDoc(
        "MAX_UNCOMMITTED_RECORDS",
        "`4 × INKIT_MAX_IN_FLIGHT`",
        "Records finished or in flight and not yet covered by an offset commit Kafka accepted; "
        "at it, nothing new is sent until a commit lands. Bounds what a crash can send twice, "
        "also while Kafka cannot take commits.",
    ),
    SettingDoc(
        "LEDGER_ENABLED",
        "true",
        "Remember every event Inkit accepted in a compacted Kafka topic and never send it again "
        "within `DEDUPE_WINDOW_HOURS` (replays, group resets, duplicates, crashes).",
    ),
    SettingDoc(
        "KAFKA_LEDGER_TOPIC",
        "`<KAFKA_TOPIC>.sent`",
        "The sent-ledger topic (`cleanup.policy=compact`); `run` creates it when missing.",
    ),
    SettingDoc(
        "DEDUPE_WINDOW_HOURS",
        "720",
        "How long a sent event is remembered (30 days; Segment's own dedupe window was 24 h).",
    ),
    SettingDoc(
        "MAX_EVENT_AGE_HOURS",
        "",
        "Skip (reason `too_old`) events whose Kafka timestamp is older; unset: no limit.",
    ),
    SettingDoc(
        "AMBIGUOUS_SEND_POLICY",
        "resend",
        "A request that may have reached Inkit without an answer (read timeout, dropped "
        "connection, crash mid-send): `resend` (retry: at least once) or `dead-letter` (never "
        "twice: dead-letter it as `ambiguous_send`; needs the ledger, costs a ledger write per "
        "send).",
    ),
    SettingDoc("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR."),
    SettingDoc("LOG_FORMAT", "text", "`text` or `json` (one JSON object per line)."),
    SettingDoc(
        "BREAKER_MIN_FAILURES",
        "20",
        "Circuit breaker: failures of one reason among the last 100 records that pause delivery "
        "(held, not dead-lettered) when they are also `BREAKER_FAILURE_RATIO` of them; 0: off.",
    ),
    SettingDoc("BREAKER_FAILURE_RATIO", "0.5", "Circuit breaker: share of recent records (0-1]."),
    SettingDoc(
        "BREAKER_ACTION",
        "pause",
        "`pause` (hold and probe) or `dead-letter` (log, dead-letter on).",
    ),
)
