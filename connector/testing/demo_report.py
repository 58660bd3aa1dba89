"""What the demo measures and prints: a snapshot of the connector's metrics, the closing
summary, and the checks against the outcomes the event generator expects."""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from connector.testing.demo_events import SEGMENT_EXAMPLE_USER, DemoStream
from connector.testing.inkit_simulator import InkitSimulator, RecordedRequest


@dataclass(frozen=True)
class Where:
    """Where the summary points the user."""

    metrics_url: str
    waits_for_enter: bool
    log_path: Path
    events_path: Path
    command: str
    dlq_topic: str


OUTCOME_LABELS = (
    ("delivered", "delivered"),
    ("skipped", "skipped"),
    ("dead_lettered", "dead-lettered"),
)


@dataclass
class Snapshot:
    """One scrape of the connector's /metrics, reduced to what the demo shows."""

    records: Counter[tuple[str, str]] = field(default_factory=Counter)  # (outcome, reason)
    retries: Counter[str] = field(default_factory=Counter)
    http: Counter[str] = field(default_factory=Counter)  # by status code
    rate_limited: float = 0.0
    lag: dict[int, float] = field(default_factory=dict)
    committed: dict[int, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, topic: str) -> Snapshot:
        snap = cls()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels, value = sample.labels, sample.value
                name = sample.name
                if name == "inkit_connector_records_total":
                    snap.records[(labels["outcome"], labels["reason"])] += int(value)
                elif name == "inkit_connector_retries_total":
                    snap.retries[labels["reason"]] += int(value)
                elif name == "inkit_connector_http_requests_total":
                    snap.http[labels["code"]] += int(value)
                elif name == "inkit_connector_rate_limited_total":
                    snap.rate_limited = value
                elif name == "inkit_connector_consumer_lag_records" and labels["topic"] == topic:
                    snap.lag[int(labels["partition"])] = value
                elif name == "inkit_connector_committed_offset" and labels["topic"] == topic:
                    snap.committed[int(labels["partition"])] = value
        return snap

    def outcome(self, name: str) -> int:
        return sum(n for (outcome, _), n in self.records.items() if outcome == name)

    @property
    def finished(self) -> int:
        return sum(self.records.values())

    @property
    def total_lag(self) -> float | None:
        return sum(self.lag.values()) if self.lag else None


def write_summary(
    say: Callable[..., None],
    stream: DemoStream,
    snap: Snapshot,
    simulator: InkitSimulator,
    dead_letters: list[dict[str, str]],
    *,
    where: Where,
) -> None:
    """The closing summary: outcomes, retries, lag, dead letters, one request, where to look."""

    def row(label: str, count: float, detail: str = "") -> None:
        lines = textwrap.wrap(detail, width=52) or [""]
        say(f"  {label:<15}{int(count):6d}   {lines[0]}")
        for line in lines[1:]:
            say(" " * 26 + line)

    def counts(items: Mapping[str, float]) -> str:
        ranked = sorted(((n, r) for r, n in items.items() if n), key=lambda x: (-x[0], x[1]))
        return ", ".join(f"{r} {int(n)}" for n, r in ranked)

    say()
    say("=" * 78)
    say(f"Summary of {stream.total} records (the connector's inkit_connector_* metrics)")
    for outcome, label in OUTCOME_LABELS:
        reasons = {r: n for (o, r), n in snap.records.items() if o == outcome}
        row(label, snap.outcome(outcome), counts(reasons))
    row("retries", sum(snap.retries.values()), counts(snap.retries) or "none")
    row("429 answers", snap.rate_limited, "each pauses the client for Retry-After")
    row("HTTP requests", sum(snap.http.values()), "by status: " + counts(snap.http))
    lags = " ".join(f"p{p}={int(v)}" for p, v in sorted(snap.lag.items()))
    row("consumer lag", snap.total_lag or 0, f"by partition: {lags}")
    reasons = Counter(d.get("inkit.error.reason", "?") for d in dead_letters)
    row(
        "dead letters",
        len(dead_letters),
        f"records in {where.dlq_topic}, by inkit.error.reason: {counts(reasons)}",
    )
    stats = simulator.stats()
    received = ", ".join(f"{s}: {n}" for s, n in stats["by_status"].items())
    row("Inkit received", stats["total"], f"requests ({received})")
    say()
    request = example_request(simulator.requests())
    if request is not None:
        say(f"One request as Inkit received it: POST {request.path} (api_token redacted)")
        body = {"api_token": "[REDACTED]", **request.body}
        say(json.dumps(body, indent=2, ensure_ascii=False))
        say()
    say("Where to look:")
    say(f"  metrics  {where.metrics_url}  (also /healthz and /readyz)")
    if where.waits_for_enter:
        say("           live until you press Enter below")
    else:
        say("           live only while the demo runs (in a terminal it waits for Enter)")
    say(f"  log      {where.log_path}")
    events = where.events_path
    say(f"  events   {events}")
    say(f"           try: {where.command} preview --format json < {events}")
    say("=" * 78)


def example_request(requests: list[RecordedRequest]) -> RecordedRequest | None:
    """Segment's first example (Nick Fury, full address) as delivered, else the first one."""
    for request in requests:
        body = request.body
        if body.get("segment_user_id") == SEGMENT_EXAMPLE_USER and "address_line_1" in body:
            return request
    return requests[0] if requests else None


def check_outcomes(
    stream: DemoStream, snap: Snapshot, dead_letters: list[dict[str, str]], dlq_topic: str
) -> list[str]:
    """What differs from the outcomes the event generator expects (empty when all is well)."""
    problems = []
    got = Counter({k: v for k, v in snap.records.items() if v})
    for key in sorted(set(got) | set(stream.expected)):
        if got[key] != stream.expected[key]:
            outcome, reason = key
            problems.append(f"{outcome}/{reason}: {got[key]}, expected {stream.expected[key]}")
    if len(dead_letters) != stream.dead_letters:
        problems.append(
            f"{dlq_topic} holds {len(dead_letters)} records, expected {stream.dead_letters}"
        )
    return problems
