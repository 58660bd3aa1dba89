"""Every Prometheus metric the connector exports. Names are public API: dashboards and alerts
depend on them, and the README's metrics table is generated from ``Metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from connector import __version__
from connector.models import AmbiguousPolicy, Outcome

NAMESPACE = "inkit_connector"

# Request round trips to Inkit: from a fast loopback to a slow render.
HTTP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Event timestamp to delivery: seconds for a live stream, hours for a backlog or a retry window.
E2E_BUCKETS_S = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    14400.0,
)

RETRY_REASONS = ("timeout", "connection_error", "rate_limited", "server_error", "http_error")
COMMIT_RESULTS = ("success", "failure")
REBALANCE_EVENTS = ("assigned", "revoked", "lost")
AMBIGUOUS_ACTIONS = (
    (AmbiguousPolicy.RESEND.value, "retried"),
    (AmbiguousPolicy.DEAD_LETTER.value, "dead_lettered"),
    (AmbiguousPolicy.DEAD_LETTER.value, "open_intent"),
)
# Inkit's contact fields (and Segment's `name`, which fills two of them): the closed label set of
# dropped_fields. A value is never a label.
DROPPABLE_FIELDS = (
    "first_name",
    "last_name",
    "name",
    "email",
    "company",
    "phone",
    "address_line_1",
    "address_line_2",
    "address_city",
    "address_state",
    "address_zip",
    "address_country",
)
# What holds a partition's oldest unfinished record (the holder label: a closed set).
HOLDERS = (
    "none",
    "in_flight",
    "retrying",
    "auth",
    "backpressure",
    "handoff",
    "registry",
    "dead_letter",
    "dead_letter_retry",
    "dlq_scan",
)


class Metrics:
    """The metric catalogue, built on an injected registry (tests pass a fresh one).

    Label values come from closed sets (outcomes, reason codes, status codes, partitions): never a
    user id, a message id or a trait value.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, namespace=NAMESPACE, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, namespace=NAMESPACE, registry=registry)

        self.registry = registry
        self.records_consumed = counter("records_consumed", "Records read from Kafka.", ("topic",))
        self.records = counter(
            "records",
            "Records finished, by outcome (delivered, dead_lettered, skipped) and reason code.",
            ("outcome", "reason"),
        )
        self.http_requests = counter(
            "http_requests",
            "HTTP requests to Inkit, by status code (or timeout / connection_error).",
            ("code",),
        )
        self.http_request_duration = Histogram(
            "http_request_duration_seconds",
            "Duration of one HTTP request to Inkit, whatever its result.",
            namespace=NAMESPACE,
            registry=registry,
            buckets=HTTP_BUCKETS_S,
        )
        self.retries = counter(
            "retries",
            "Requests scheduled for a retry, by reason (timeout, connection_error, rate_limited, "
            "server_error, http_error).",
            ("reason",),
        )
        self.rate_limited = counter(
            "rate_limited", "Responses 429 from Inkit (each slows the whole client)."
        )
        self.in_flight = gauge("requests_in_flight", "HTTP requests to Inkit in flight now.")
        self.buffered = gauge(
            "buffered_records", "Records fetched from Kafka and not finished yet (in memory)."
        )
        self.uncommitted = gauge(
            "uncommitted_records",
            "Records finished or in flight and not yet covered by an offset commit Kafka "
            "accepted: what a crash now could send again (capped by MAX_UNCOMMITTED_RECORDS).",
        )
        self.paused_partitions = gauge("paused_partitions", "Assigned partitions paused now.")
        self.assigned_partitions = gauge("assigned_partitions", "Partitions assigned now.")
        self.offset_commits = counter(
            "offset_commits", "Offset commits to Kafka, by result (success, failure).", ("result",)
        )
        self.committed_offset = gauge(
            "committed_offset",
            "Last offset committed by this process (the next offset to read).",
            ("topic", "partition"),
        )
        self.consumer_lag = gauge(
            "consumer_lag_records",
            "Records between the committed offset and the end of the partition.",
            ("topic", "partition"),
        )
        self.group_lag = gauge(
            "group_lag_records",
            "The consumer group's lag read from the broker, every partition of the topic: end "
            "offset minus the group's committed offset (exported by every replica).",
            ("topic", "partition"),
        )
        self.group_committed_offset = gauge(
            "group_committed_offset",
            "The consumer group's committed offset read from the broker (absent where the group "
            "never committed).",
            ("topic", "partition"),
        )
        self.group_lag_reads = counter(
            "group_lag_reads",
            "Reads of the group's lag from the broker, by result (ok, failed).",
            ("result",),
        )
        self.end_to_end_latency = Histogram(
            "end_to_end_latency_seconds",
            "Time from the event's timestamp (Kafka record time) to Inkit's 2xx.",
            namespace=NAMESPACE,
            registry=registry,
            buckets=E2E_BUCKETS_S,
        )
        self.rebalances = counter(
            "rebalances", "Rebalance events, by kind (assigned, revoked, lost).", ("event",)
        )
        self.auth_blocked = gauge(
            "auth_blocked", "1 while Inkit refuses the API key (401/403) and delivery is paused."
        )
        self.ready = gauge("ready", "1 when /readyz answers ready.")
        self.last_delivery = gauge(
            "last_delivery_timestamp_seconds", "Unix time of the last successful delivery."
        )
        self.dead_letter_failures = counter(
            "dead_letter_produce_failures",
            "Dead-letter produces that failed (the record is retried, its offset not committed).",
        )
        self.dead_letter_scans = counter(
            "dead_letter_scans",
            "Reads of the dead-letter topic at assignment, looking for copies a previous owner "
            "wrote after its last commit, by result (ok, failed: a copy may be written twice).",
            ("result",),
        )
        self.breaker_open = gauge(
            "breaker_open",
            "1 while the circuit breaker holds records that fail for one systemic reason and "
            "delivery is paused (see BREAKER_MIN_FAILURES).",
        )
        self.breaker_trips = counter(
            "breaker_trips", "Times the circuit breaker opened, by failure reason.", ("reason",)
        )
        self.rate_limit_share = gauge(
            "rate_limit_share",
            "This member's share of the group's rate limit: assigned partitions over the topic's "
            "(INKIT_RATE_LIMIT_SCOPE=group); 1 with pod scope; 0 without INKIT_RATE_LIMIT.",
        )
        self.rate_limit_group = gauge(
            "rate_limit_group_requests_per_second",
            "The group's request rate limit as this member sees it: INKIT_RATE_LIMIT, or the "
            "current adaptive rate (INKIT_RATE_LIMIT_ADAPTIVE).",
        )
        self.rate_limit_member = gauge(
            "rate_limit_requests_per_second",
            "This member's request rate limit now: the group's rate times its share.",
        )
        self.rate_limit_decreases = counter(
            "rate_limit_decreases", "Adaptive mode: step-downs of the rate after a 429."
        )
        self.dropped_fields = counter(
            "dropped_fields",
            "Optional contact traits dropped because their value was a boolean, a list or an "
            "object (the letter is sent without them), by field (Inkit's name, or `name`).",
            ("field",),
        )
        self.oldest_unfinished_age = gauge(
            "oldest_unfinished_age_seconds",
            "Per partition, how long ago its oldest unfinished record was read (0: none), and "
            "what holds it (holder: none, in_flight, retrying, auth, backpressure, handoff, "
            "registry, dead_letter, dead_letter_retry, dlq_scan). Grows without bound only in a "
            "stall.",
            ("topic", "partition", "holder"),
        )
        self.ledger_entries = gauge(
            "ledger_entries",
            "Events remembered in the sent-ledger index (sent by any member within the window).",
        )
        self.ledger_lookups = counter(
            "ledger_lookups",
            "Sent-ledger look-ups before a send, by result (hit: skipped as already_sent).",
            ("result",),
        )
        self.ledger_writes = counter(
            "ledger_writes",
            "Sent-ledger records produced after a 2xx, by result (failed: retried; deliveries "
            "are not committed until their ledger record lands).",
            ("result",),
        )
        self.ledger_rebuild_seconds = gauge(
            "ledger_rebuild_seconds",
            "Time the last start-up took to read the sent-ledger to its end.",
        )
        self.ambiguous_sends = counter(
            "ambiguous_sends",
            "Requests whose outcome is unknown (they may have reached Inkit: read timeout, "
            "dropped connection, a crash mid-send), by AMBIGUOUS_SEND_POLICY and action "
            "(retried; dead_lettered; open_intent: a previous owner's send found unresolved).",
            ("policy", "action"),
        )
        self.build_info = gauge("build_info", "Build information; always 1.", ("version",))
        self.build_info.labels(__version__).set(1)

        # Pre-create the label sets we know, so that rate() starts from 0 rather than absent.
        for reason in RETRY_REASONS:
            self.retries.labels(reason)
        for result in COMMIT_RESULTS:
            self.offset_commits.labels(result)
        for event in REBALANCE_EVENTS:
            self.rebalances.labels(event)
        for result in ("ok", "failed"):
            self.dead_letter_scans.labels(result)
        for result in ("ok", "failed"):
            self.group_lag_reads.labels(result)
        for result in ("hit", "miss"):
            self.ledger_lookups.labels(result)
        for result in ("ok", "failed"):
            self.ledger_writes.labels(result)
        for policy, action in AMBIGUOUS_ACTIONS:
            self.ambiguous_sends.labels(policy, action)
        self.records.labels(Outcome.DELIVERED.value, "ok")
        for name in DROPPABLE_FIELDS:
            self.dropped_fields.labels(name)
