"""Hostile input at volume: 10,000 mutated records interleaved with valid ones, in the
Schema Registry wire format (confluent-avro).

The mutations come from a seeded generator (CHAOS_SEED replays another one): truncation, bit
flips, wrong magic bytes, unknown schema ids, huge and deeply nested traits, invalid UTF-8,
wrong types, non-identify events, tombstones, empty values and values just under 1 MB.

Each record's expected fate is computed in the test by the connector's own decoder and mapper
(an oracle), and the deterministic kinds also pin the reason they must get, so the oracle is
itself checked. The run must then match it record by record: the process stays up, its RSS
stays under a bound, every dead letter appears once with its reason, tombstones are skipped,
and /metrics' ``inkit_connector_records_total{outcome,reason}`` equals the oracle's counts.
"""

from __future__ import annotations

import io
import json
import os
import random
import struct
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import pytest

from connector.errors import RecordError
from connector.events import avro
from connector.events.decoding import build_decoder
from connector.events.encoding import build_encoder
from connector.events.mapping import Mapper
from connector.models import Skip
from connector.settings import Settings
from connector.testing.inkit_simulator import InkitSimulator
from connector.testing.schema_registry import SchemaRegistry
from tests.integration.harness import (
    ConnectorProcess,
    committed,
    connector_env,
    end_offsets,
    identify,
    produce,
    read_all,
    wait_until,
)
from tests.reliability import Stopwatch, metric_samples, write_figures

pytestmark = pytest.mark.integration

MUTATED = 10_000
VALID = 2_000
PARTITIONS = 2
ONE_MB_VALUES = 12  # each ~990 kB: the producer's message.max.bytes is 1,000,000
HUGE_VALID = 4  # valid events whose one trait is ~900 kB: delivered, not refused
RSS_BOUND_MB = 256  # stated bound for the connector process under this input
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "schemas"

# A writer that calls `type` a long: read by shape, `type` is not a string (wrong types).
WRONG_TYPES_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "Identify",
        "namespace": "inkitconnector.segment",
        "fields": [
            {"name": "type", "type": "long"},
            {"name": "userId", "type": ["null", "string"], "default": None},
        ],
    }
)

Outcome = tuple[str, str]  # (outcome, reason) as in inkit_connector_records_total


class Generator:
    """Valid records and their mutations, each with a unique key (``r-<n>``)."""

    def __init__(self, registry_url: str, topic: str, rng: random.Random) -> None:
        self.rng = rng
        self.client = avro.SchemaRegistry(registry_url)
        self.encoder = build_encoder("confluent-avro", registry=self.client, topic=topic)
        self.recursive_id = self.client.register(
            f"{topic}-recursive", (FIXTURES / "identify_recursive.avsc").read_text()
        )
        self.recursive = fastavro.parse_schema(
            json.loads((FIXTURES / "identify_recursive.avsc").read_text())
        )
        self.wrong_id = self.client.register(f"{topic}-wrong", WRONG_TYPES_SCHEMA)
        self.wrong = fastavro.parse_schema(json.loads(WRONG_TYPES_SCHEMA))
        self.users = [f"user-{i}" for i in range(100)]
        self.seq = 0

    def close(self) -> None:
        self.encoder.close()

    def event(self, **traits: Any) -> dict[str, Any]:
        self.seq += 1
        return identify(self.rng.choice(self.users), self.seq, **traits)

    def valid(self) -> tuple[bytes, str, dict[str, Any]]:
        event = self.event()
        return self.encoder.encode(event), event["userId"], event

    def framed(self, schema_id: int, schema: Any, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(avro.HEADER.pack(avro.MAGIC_BYTE, schema_id))
        fastavro.schemaless_writer(buf, schema, record)
        return buf.getvalue()

    def mutate(self, kind: str) -> bytes | None:
        """A record of ``kind``; the value (None for a tombstone)."""
        rng = self.rng
        good = self.encoder.encode(self.event(note="A" * 24))
        if kind == "truncated":
            return good[: rng.randint(6, len(good) - 1)]
        if kind == "short_header":
            return good[: rng.randint(1, 4)]
        if kind == "bit_flip":
            value = bytearray(good)
            for _ in range(rng.randint(1, 3)):
                value[rng.randrange(5, len(value))] ^= 1 << rng.randrange(8)
            return bytes(value)
        if kind == "wrong_magic":
            return bytes([rng.randint(1, 255)]) + good[1:]
        if kind == "unknown_schema_id":
            return avro.HEADER.pack(avro.MAGIC_BYTE, rng.randint(100_000, 2**31 - 1)) + good[5:]
        if kind == "invalid_utf8":
            return good.replace(b"A" * 24, bytes(rng.randint(0x80, 0xFF) for _ in range(24)))
        if kind == "trailing_bytes":
            return good + bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 8)))
        if kind == "deep_traits":
            deep: dict[str, Any] = {"value": "bottom"}
            for _ in range(rng.randint(avro.MAX_NESTING + 1, 80)):
                deep = {"value": [deep]}
            record = {"type": "identify", "userId": rng.choice(self.users), "traits": {"d": deep}}
            return self.framed(self.recursive_id, self.recursive, record)
        if kind == "huge_traits":  # many traits: valid, a large body
            event = self.event(**{f"t{i}": "v" * 50 for i in range(rng.randint(500, 2000))})
            return self.encoder.encode(event)
        if kind == "wrong_types":
            wrong: dict[str, Any] = {"type": rng.randint(0, 2**40), "userId": "u"}
            return self.framed(self.wrong_id, self.wrong, wrong)
        if kind == "not_identify":
            event = self.event()
            event["type"] = "track"
            return self.encoder.encode(event)
        if kind == "missing_template":
            event = self.event()
            del event["traits"]["template_id"]
            return self.encoder.encode(event)
        if kind == "tombstone":
            return None
        if kind == "empty":
            return b""
        if kind == "one_mb_garbage":
            return good[:5] + rng.randbytes(990_000)
        raise AssertionError(kind)


# Deterministic kinds and the reason each must get; the others are checked against the oracle.
PINNED: dict[str, Outcome] = {
    "short_header": ("dead_lettered", "truncated"),
    "wrong_magic": ("dead_lettered", "bad_magic_byte"),
    "unknown_schema_id": ("dead_lettered", "unknown_schema_id"),
    "invalid_utf8": ("dead_lettered", "invalid_utf8"),
    "trailing_bytes": ("dead_lettered", "trailing_bytes"),
    "deep_traits": ("dead_lettered", "too_deep"),
    "huge_traits": ("delivered", "ok"),
    "wrong_types": ("dead_lettered", "type_mismatch"),
    "not_identify": ("skipped", "not_identify"),
    "missing_template": ("dead_lettered", "missing_template_id"),
    "tombstone": ("skipped", "tombstone"),
    "empty": ("dead_lettered", "empty_value"),
}
KINDS = ["truncated", "bit_flip", *PINNED]
WEIGHTS = [3, 3] + [1] * len(PINNED)


def oracle(settings: Settings) -> Callable[[bytes | None], Outcome]:
    decoder = build_decoder(settings)
    mapper = Mapper(settings)

    def expect(value: bytes | None) -> Outcome:
        try:
            result = mapper.map(decoder.decode(value))
        except RecordError as exc:
            return ("skipped" if exc.reason == "tombstone" else "dead_lettered", exc.reason)
        if isinstance(result, Skip):
            return ("skipped", result.reason)
        return ("delivered", "ok")

    return expect


class RssSampler:
    """Samples a process's VmRSS every ``interval_s`` on a thread, and checks it is alive."""

    def __init__(self, process: ConnectorProcess, interval_s: float = 0.25) -> None:
        self._process = process
        self._interval_s = interval_s
        self.samples_kb: list[int] = []
        self.died: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        assert self._process.proc is not None
        pid = self._process.proc.pid
        while not self._stop.wait(self._interval_s):
            if self._process.proc.poll() is not None:
                self.died = self._process.proc.returncode
                return
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    self.samples_kb.append(int(line.split()[1]))


@pytest.fixture
def registry_topic(topic_factory: Callable[..., str]) -> tuple[str, str]:
    """The input topic and its dead-letter topic."""
    return topic_factory(partitions=PARTITIONS), topic_factory(partitions=1)


@pytest.mark.timeout(900)
def test_ten_thousand_mutated_records_never_stop_the_flow(
    kafka_bootstrap: str,
    registry_topic: tuple[str, str],
    schema_registry: SchemaRegistry,
    inkit_simulator: InkitSimulator,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    clock = Stopwatch()
    seed = int(os.environ.get("CHAOS_SEED", "20261128"))
    rng = random.Random(seed)
    topic, dlq = registry_topic
    group = f"g-{uuid.uuid4().hex[:8]}"
    env = connector_env(
        kafka_bootstrap,
        topic,
        dlq,
        inkit_simulator,
        group,
        KAFKA_VALUE_FORMAT="confluent-avro",
        SCHEMA_REGISTRY_URL=schema_registry.url,
        LOG_LEVEL="WARNING",
        # 83% of this stream is broken on purpose: every bad record must reach the dead-letter
        # topic, so the circuit breaker (which would rightly pause on it) is off here.
        BREAKER_MIN_FAILURES="0",
    )
    expect = oracle(Settings.from_env(env))
    generator = Generator(schema_registry.url, topic, rng)

    # -- the input: valid and mutated records in one interleaved stream ------------------------
    records: list[tuple[bytes, bytes | None]] = []
    expected: dict[bytes, Outcome] = {}
    kinds: Counter[str] = Counter()
    valid_markers: set[tuple[str, int]] = set()
    total = MUTATED + VALID
    # Exactly MUTATED mutations and VALID valid events, shuffled together; a few slots of each
    # carry values of about 1 MB.
    slots = ["mutated"] * (MUTATED - ONE_MB_VALUES) + ["one_mb_garbage"] * ONE_MB_VALUES
    slots += ["valid"] * (VALID - HUGE_VALID) + ["one_mb_valid"] * HUGE_VALID
    rng.shuffle(slots)
    for n, slot in enumerate(slots):
        key = f"r-{n}".encode()
        value: bytes | None
        if slot == "one_mb_valid":
            event = generator.event(huge=rng.randbytes(450_000).hex())  # ~900 kB of text
            value, kind = generator.encoder.encode(event), slot
            valid_markers.add((event["userId"], event["traits"]["test_seq"]))
        elif slot == "valid":
            value, _user, event = generator.valid()
            kind = "valid"
            valid_markers.add((event["userId"], event["traits"]["test_seq"]))
        elif slot == "one_mb_garbage":
            value, kind = generator.mutate(slot), slot
        else:
            kind = rng.choices(KINDS, WEIGHTS)[0]
            value = generator.mutate(kind)
        outcome = expect(value)
        if kind in PINNED:
            assert outcome == PINNED[kind], f"{kind}: the oracle says {outcome}"
        if kind in ("valid", "one_mb_valid"):
            assert outcome == ("delivered", "ok")
        expected[key] = outcome
        kinds[kind] += 1
        records.append((key, value))
    generator.close()
    produce(kafka_bootstrap, topic, [], raw=records)
    produced_s = clock()
    expected_counts = Counter(expected.values())

    # -- the run ---------------------------------------------------------------------------------
    connector = ConnectorProcess(env, tmp_path, name="hostile").start()
    try:
        with RssSampler(connector) as rss:

            def all_committed() -> bool:
                connector.assert_running()
                ends = end_offsets(kafka_bootstrap, topic, PARTITIONS)
                return committed(kafka_bootstrap, group, topic, PARTITIONS) == ends

            wait_until(all_committed, 600, connector.log_tail())
        metrics_text = connector.get("/metrics")
        assert metrics_text is not None
        assert connector.stop() == 0
    finally:
        if connector.proc is not None and connector.proc.poll() is None:
            connector.kill()
    run_s = clock()
    assert rss.died is None, f"connector died with {rss.died}"

    # -- what happened ---------------------------------------------------------------------------
    finished = Counter(
        {
            (labels["outcome"], labels["reason"]): int(value)
            for labels, value in metric_samples(metrics_text.text, "inkit_connector_records_total")
            if value
        }
    )
    assert finished == expected_counts

    dead = read_all(kafka_bootstrap, dlq, timeout_s=30)
    dead_by_key: Counter[bytes] = Counter(record.key() for record in dead)
    expected_dead = {k: o[1] for k, o in expected.items() if o[0] == "dead_lettered"}
    assert set(dead_by_key) == set(expected_dead)
    assert max(dead_by_key.values()) == 1, "a dead letter was written twice"
    omitted = 0
    for record in dead:
        headers = {k: (v or b"").decode() for k, v in record.headers() or []}
        assert headers["inkit.error.reason"] == expected_dead[record.key()]
        omitted += headers.get("inkit.value.omitted") == "too_large"

    delivered_markers: Counter[tuple[str, Any]] = Counter()
    for recorded in inkit_simulator.requests():
        body = recorded.body
        delivered_markers[(str(body.get("test_user")), body.get("test_seq"))] += 1
    assert valid_markers <= set(delivered_markers), "a valid event was not delivered"
    assert sum(delivered_markers.values()) == expected_counts[("delivered", "ok")]

    rss_mb = [kb / 1024 for kb in rss.samples_kb]
    assert rss_mb, "no RSS sample"
    assert max(rss_mb) < RSS_BOUND_MB
    write_figures(
        request,
        "hostile-input",
        {
            "seed": seed,
            "records": total,
            "mutated": total - kinds["valid"] - kinds["one_mb_valid"],
            "valid": kinds["valid"] + kinds["one_mb_valid"],
            "kinds": dict(kinds),
            "outcomes": {f"{o}/{r}": n for (o, r), n in sorted(expected_counts.items())},
            "dead_letters": len(dead),
            "dead_letters_value_omitted_too_large": omitted,
            "delivered": sum(delivered_markers.values()),
            "crashes": 0,
            "rss_mb": {
                "first": round(rss_mb[0], 1),
                "max": round(max(rss_mb), 1),
                "last": round(rss_mb[-1], 1),
                "bound": RSS_BOUND_MB,
                "samples": len(rss_mb),
            },
            "seconds": {"generate_and_produce": produced_s, "total": run_s},
        },
    )


def test_struct_header_matches_the_wire_format() -> None:
    """The generator frames records by hand; this pins the framing to Confluent's."""
    assert avro.HEADER.pack(avro.MAGIC_BYTE, 7) == b"\x00" + struct.pack(">I", 7)
