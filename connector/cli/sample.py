"""`check`'s look at the data: decode a sample of the topic's latest records with the configured
KAFKA_VALUE_FORMAT, and when they do not decode, say what format they look like."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from connector.cli.check import CheckResult
from connector.errors import DecodeError, RegistryUnavailable
from connector.events.decoding import build_decoder
from connector.events.sniff import describe, likely_format
from connector.kafka.consumer import scanner_config
from connector.settings import Settings

SAMPLE_PER_PARTITION = 10
SAMPLE_TIMEOUT_S = 10.0


def read_latest(settings: Settings, per_partition: int, timeout_s: float) -> list[bytes | None]:
    """Values of the last ``per_partition`` records of each partition of KAFKA_TOPIC. Assigns
    (never joins the group, never commits), so the connector's group is not disturbed."""
    conf = scanner_config(settings, lambda _err: None)
    conf["group.id"] = f"{settings.group_id}.check"
    conf["enable.partition.eof"] = True  # an EOF event per partition tells us we have read all
    consumer = Consumer(conf)
    values: list[bytes | None] = []
    try:
        metadata = consumer.list_topics(settings.topic, timeout=timeout_s)
        wanted: list[Any] = []
        for partition in metadata.topics[settings.topic].partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(settings.topic, partition), timeout=timeout_s
            )
            if high > low:
                wanted.append(
                    TopicPartition(settings.topic, partition, max(low, high - per_partition))
                )
        if not wanted:
            return values
        consumer.assign(wanted)
        open_partitions = {tp.partition for tp in wanted}
        deadline = time.monotonic() + timeout_s
        while open_partitions and time.monotonic() < deadline:
            for record in consumer.consume(100, 0.5):
                if record.error() is not None:
                    # _PARTITION_EOF (librdkafka, enable.partition.eof): this partition is read.
                    open_partitions.discard(record.partition())
                    continue
                values.append(record.value())
    finally:
        consumer.close()
    return values


def check_sample(settings: Settings) -> CheckResult:
    """FAIL when most sampled records do not decode as KAFKA_VALUE_FORMAT (naming what they
    look like); ok when they decode or the topic is empty."""
    try:
        values = read_latest(settings, SAMPLE_PER_PARTITION, SAMPLE_TIMEOUT_S)
    except KafkaException as exc:
        return CheckResult("records", False, f"could not read a sample ({exc.args[0].str()})")
    if not values:
        return CheckResult("records", True, "topic is empty: nothing to sample")
    decoder = build_decoder(settings)
    failed: list[bytes | None] = []
    reasons: set[str] = set()
    try:
        for value in values:
            try:
                decoder.decode(value)
            except DecodeError as exc:
                failed.append(value)
                reasons.add(exc.reason)
            except RegistryUnavailable:
                return CheckResult("records", False, "schema registry unavailable while decoding")
    finally:
        decoder.close()
    ok = len(values) - len(failed)
    if len(failed) * 2 <= len(values):
        return CheckResult(
            "records", True, f"{ok} of the latest {len(values)} decode as {settings.value_format}"
        )
    looks = likely_format(failed)
    hint = (
        f"set KAFKA_VALUE_FORMAT={looks}"
        if looks and looks != settings.value_format
        else "check the producers"
    )
    return CheckResult(
        "records",
        False,
        f"{len(failed)} of the latest {len(values)} do not decode as {settings.value_format} "
        f"({', '.join(sorted(reasons))}); they look like {describe(looks)}: {hint}",
    )
